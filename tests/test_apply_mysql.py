"""Applying events to a real MariaDB whose master holds only what an RDS master holds (no
SUPER), with moto's Secrets Manager: every assertion looks at effects, by logging in with the
secret's password and trying what the application would try. What is MariaDB's own; the
engine-neutral tests, which run here too, are in tests/test_apply.py."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pymysql
import pytest
from conftest import SEED, tool, user

DDL, DML, RO = (u["user_secret_name"] for u in SEED["users"])
DDL_USER = "airflow-rw-ddl"


def test_no_user_gets_a_privilege_on_every_database(maria):
    maria.invoke(maria.seed_event())
    for entry in SEED["users"]:
        assert maria.global_grants(entry["db_user"]) == set()
        assert "GRANT OPTION" not in maria.grants(entry["db_user"])
    assert not maria.can(DML, "CREATE TABLE other (x int)")


def test_a_grant_option_given_by_hand_is_revoked_and_reported(maria):
    maria.invoke(maria.seed_event())
    with maria.root() as connection:
        maria.run_sql(
            connection, "GRANT DELETE ON airflow.* TO 'airflow-ro-dml'@'%%' WITH GRANT OPTION"
        )

    report = maria.invoke(maria.seed_event())

    assert maria.grants("airflow-ro-dml") == {"SELECT"}
    assert report["users"][2]["changes"] == ["revoke DELETE, GRANT OPTION on airflow.*"]


def test_the_secret_has_the_structure_the_aws_mariadb_rotation_function_reads(maria):
    maria.invoke(maria.seed_event())
    value = maria.secret(RO)
    master_arn = maria.sm.describe_secret(SecretId=maria.secret_name)["ARN"]
    assert {k: value[k] for k in ("engine", "host", "port", "username", "dbname", "masterarn")} == {
        "engine": "mariadb",
        "host": maria.server.host,
        "port": maria.server.port,
        "username": "airflow-ro-dml",
        "dbname": "airflow",
        "masterarn": master_arn,
    }


def test_delete_removes_the_user_and_its_secret(maria):
    maria.invoke(maria.seed_event())

    report = maria.invoke(
        maria.event([user("airflow-ro-dml", RO, action="delete")], secret_recovery_days=0)
    )

    assert report["users"][0]["result"] == "deleted"
    assert report["users"][0]["changes"] == ["drop user", "secret deleted"]
    assert ("airflow-ro-dml", "%") not in maria.accounts()
    with pytest.raises(maria.sm.exceptions.ResourceNotFoundException):
        maria.sm.describe_secret(SecretId=RO)


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("CREATE VIEW v AS SELECT x FROM t", "view airflow.v"),
        ("CREATE PROCEDURE p() SELECT 1", "procedure airflow.p"),
        ("CREATE FUNCTION f() RETURNS INT DETERMINISTIC RETURN 1", "function airflow.f"),
        ("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.x = 1", "trigger airflow.tr"),
        ("CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO SELECT 1", "event airflow.e"),
    ],
)
def test_a_user_that_defines_objects_is_not_deleted_and_nothing_changes(maria, statement, named):
    maria.invoke(maria.seed_event())
    with maria.login(DDL) as connection:
        maria.run_sql(connection, "CREATE TABLE t (x int)")
        maria.run_sql(connection, statement)
    event = maria.event(
        [user("airflow-ro-dml", RO, action="delete"), user(DDL_USER, DDL, action="delete")]
    )

    with pytest.raises(tool.InvalidEvent) as caught:
        maria.invoke(event)

    assert caught.value.problems == [
        f"user 'airflow-rw-ddl'@'%' cannot be deleted: it is the DEFINER of {named}; "
        "change their DEFINER or drop them first"
    ]
    assert ("airflow-ro-dml", "%") in maria.accounts()
    assert maria.secret(RO)["username"] == "airflow-ro-dml"


def test_an_account_host_is_managed_as_given(maria):
    maria.invoke(maria.event([user("app", grant_privileges="SELECT", host="127.0.0.1")]))
    assert maria.accounts() == {("app", "127.0.0.1")}
    assert maria.can("secret-app", "SELECT 1")


def test_a_database_name_with_an_underscore_grants_on_that_database_only(maria):
    with maria.root() as connection:
        maria.run_sql(connection, "CREATE DATABASE my_app")
        maria.run_sql(connection, "CREATE DATABASE myXapp")
    maria.invoke(maria.event([user("app", grant_privileges="SELECT")], database_name="my_app"))

    assert maria.grants("app", database="my\\_app") == {"SELECT"}
    with maria.login("secret-app") as connection:
        with pytest.raises(pymysql.err.OperationalError):
            maria.run_sql(connection, "USE myXapp")


def test_a_database_that_does_not_exist_is_refused(maria):
    with pytest.raises(tool.InvalidEvent) as caught:
        maria.invoke(maria.event([user("app")], database_name="airflw"))
    assert caught.value.problems == ["database 'airflw' does not exist on this server"]
    assert maria.accounts() == set()


@pytest.mark.parametrize("name", ["master", "mariadb.sys", "mysql.session", "rdsadmin"])
def test_the_master_and_system_accounts_are_refused(maria, name):
    name = maria.master if name == "master" else name
    with pytest.raises(tool.InvalidEvent, match="never managed"):
        maria.invoke(maria.event([user(name)]))


def test_an_account_with_super_is_refused(maria):
    with maria.root() as connection:
        maria.run_sql(connection, "CREATE USER 'boss'@'%%' IDENTIFIED BY 'Secret-Pw-1'")
        maria.run_sql(connection, "GRANT SUPER ON *.* TO 'boss'@'%%'")
    with pytest.raises(tool.InvalidEvent) as caught:
        maria.invoke(maria.event([user("boss")]))
    assert caught.value.problems == ["user 'boss'@'%' has SUPER: never managed"]


def test_dry_run_plans_only_and_writes_nothing(maria):
    report = maria.invoke(maria.seed_event(dry_run=True))

    assert report["status"] == "dry_run" and report["changed"] is True
    assert maria.accounts() == set()
    # The tool's table of records first (made before any account it speaks of), then the records
    assert report["sql"][0] == "CREATE DATABASE IF NOT EXISTS `rds_initializer`"
    assert "CREATE USER 'airflow-rw-ddl'@'%' IDENTIFIED BY PASSWORD '***'" in report["sql"]
    assert not {"CreateSecret", "PutSecretValue"} & set(report["stats"]["aws_calls"])


def test_the_engine_may_come_from_the_master_secret(maria):
    event = maria.seed_event()
    del event["db_engine"]
    assert maria.invoke(event)["engine"] == "mariadb"


def test_a_failure_part_way_says_what_was_applied_and_a_rerun_converges(maria):
    with maria.root() as connection:  # the master may no longer grant TRIGGER: GRANT will fail
        maria.run_sql(connection, "REVOKE TRIGGER ON *.* FROM %s@'%%'", maria.master)
    event = maria.event([user("app", grant_privileges="SELECT,TRIGGER")])

    with pytest.raises(tool.ApplyError) as caught:
        maria.invoke(event)

    message = str(caught.value)
    # the tool's table of records and the record come first (see MySql.with_records)
    assert "step 5 of 5 (app: grant SELECT, TRIGGER on airflow.*) failed" in message
    assert "Applied before it (4 statements, each final): " in message
    assert "app: create user." in message
    assert "a re-run converges" in message
    with maria.root() as connection:
        maria.run_sql(connection, "GRANT TRIGGER ON *.* TO %s@'%%' WITH GRANT OPTION", maria.master)
    report = maria.invoke(event)
    assert report["users"][0]["changes"] == ["grant SELECT, TRIGGER on airflow.*"]
    assert maria.can("secret-app", "SELECT 1")


def test_concurrent_invocations_take_turns_and_see_each_others_work(maria):
    """The same seed event four times at once: one creates, the others wait on GET_LOCK and
    then find nothing left to do (without the lock, two would both try CREATE USER)."""
    reports, errors = [], []

    def invoke():
        try:
            reports.append(maria.invoke(maria.seed_event()))
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=invoke) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(r["changed"] for r in reports) == [False, False, False, True]
    assert all(maria.can(name, "SELECT 1") for name in (DDL, DML, RO))


def test_a_concurrent_invocation_waits_for_the_lock_then_fails_cleanly_when_time_is_up(maria):
    with maria.as_master() as holder:
        maria.run_sql(holder, "SELECT GET_LOCK('rds-initializer', 0)")
        context = SimpleNamespace(
            aws_request_id="t", get_remaining_time_in_millis=lambda: tool.Deadline.MARGIN_MS + 1500
        )
        with pytest.raises(tool.ApplyError, match="another rds-initializer invocation"):
            tool.lambda_handler(maria.seed_event(), context)
    assert maria.accounts() == set()


def test_ssl_mode_require_refuses_a_server_without_tls(maria):
    with pytest.raises(tool.ApplyError, match="SSL is required but the server doesn't support"):
        maria.invoke(maria.seed_event(ssl_mode="require"))


def test_an_existing_account_without_a_secret_is_adopted_with_a_new_password(maria):
    with maria.root() as connection:
        maria.run_sql(connection, "CREATE USER 'legacy'@'%%' IDENTIFIED BY 'old-password'")

    report = maria.invoke(maria.event([user("legacy", grant_privileges="SELECT")]))

    assert report["users"][0]["changes"] == [
        "new password",
        "grant SELECT on airflow.*",
        "secret created",
    ]
    assert maria.can("secret-legacy", "SELECT 1")
    with pytest.raises(pymysql.err.OperationalError):
        maria.connect("legacy", "old-password").close()


def test_debug_logs_show_the_sql_with_passwords_and_hashes_blanked(maria, capsys):
    logged, executed = maria.invoke_at_debug(maria.seed_event(), capsys)

    assert "CREATE USER 'airflow-rw-ddl'@'%' IDENTIFIED BY PASSWORD '***'" in executed
    for name in (DDL, DML, RO):
        password = maria.secret(name)["password"]
        assert password not in logged
        assert tool.native_password_hash(password) not in logged
