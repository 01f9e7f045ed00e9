"""Life alongside AWS's multi-user rotation (docs/CONTRACT.md §6 and §7), on real PostgreSQL
(14 to 18) and MariaDB: the tool's secrets are rotated by a faithful rendering of the AWS functions
(tests/aws_rotation.py), which switches a secret to U_clone; after that the tool keeps the
username the secret holds, changes that account's password, keeps both accounts' access the
same, and deletes both. Every check logs in with the secret, as the application would."""

from __future__ import annotations

import pytest
from aws_rotation import MultiUserRotation
from conftest import SEED

DDL, DML, RO = (u["user_secret_name"] for u in SEED["users"])
SECRETS = (DDL, DML, RO)


def with_rotation(db, rotation_function: str, **extra):
    """The seed example with rotation on for every user, through the deployment's function."""
    return db.seed_event(rotation={"lambda_arn": rotation_function, "days": 30}, **extra)


def enable_rotation(db, rotation_function: str) -> dict:
    report = db.invoke(with_rotation(db, rotation_function))
    for name in SECRETS:
        db.end_test_rotation(name)  # moto leaves its testSecret version: AWS removes it
    return report


def usernames(db) -> list[str]:
    return [db.secret(name)["username"] for name in SECRETS]


def versions(db) -> dict:
    return {name: db.versions(name) for name in SECRETS}


def logins(db) -> set[str]:
    """The names of the accounts the test made (PostgreSQL roles, MySQL users)."""
    return db.roles() if db.ENGINE == "postgres" else {name for name, _ in db.accounts()}


def rotated(db, rotation_function: str, *secret_names: str) -> MultiUserRotation:
    """The seed example with rotation on, then an AWS rotation of each of `secret_names`."""
    enable_rotation(db, rotation_function)
    aws = MultiUserRotation(db.sm, db.ENGINE)
    for name in secret_names:
        aws.rotate(name)
    return aws


# Both engines: each of these runs on PostgreSQL (every major) and on MariaDB ---------------


def test_a_rerun_after_rotation_changes_nothing(db, rotation_function):
    rotated(db, rotation_function, *SECRETS)
    before = versions(db)

    report = db.invoke(with_rotation(db, rotation_function))

    assert report["changed"] is False and report["stats"]["sql_statements"] == 0
    assert versions(db) == before
    assert all(db.can(name, "SELECT 1") for name in SECRETS)


def test_an_update_after_rotation_changes_the_clones_password(db, rotation_function):
    rotated(db, rotation_function, RO)
    old = db.secret(RO)["password"]
    event = with_rotation(db, rotation_function)
    event["users"][2]["action"] = "update"

    report = db.invoke(event)

    assert "new password of airflow-ro-dml_clone" in report["users"][2]["changes"]
    assert db.secret(RO)["username"] == "airflow-ro-dml_clone"
    assert db.secret(RO)["password"] != old
    assert db.can(RO, "SELECT 1")


def test_a_second_rotation_switches_back_and_the_tool_follows(db, rotation_function):
    rotated(db, rotation_function, RO, RO)

    assert db.secret(RO)["username"] == "airflow-ro-dml"
    assert db.can(RO, "SELECT 1")
    assert db.invoke(with_rotation(db, rotation_function))["changed"] is False


def test_a_delete_removes_the_user_its_clone_and_its_secret(db, rotation_function):
    rotated(db, rotation_function, RO)
    event = db.event(
        [{"db_user": "airflow-ro-dml", "action": "delete", "user_secret_name": RO}],
        secret_recovery_days=0,
    )

    report = db.invoke(event)

    assert any(c.endswith("and its rotation clone") for c in report["users"][0]["changes"])
    assert not {"airflow-ro-dml", "airflow-ro-dml_clone"} & logins(db)
    with pytest.raises(db.sm.exceptions.ResourceNotFoundException):
        db.sm.describe_secret(SecretId=RO)
    assert db.can(DDL, "SELECT 1")


def test_a_rotation_in_progress_is_never_touched_nor_promoted(db, rotation_function):
    aws = rotated(db, rotation_function)
    token = aws.rotate(RO, until="setSecret")  # the clone has its new password already
    before = versions(db)

    report = db.invoke(with_rotation(db, rotation_function))

    assert report["changed"] is False
    assert versions(db) == before and "AWSPENDING" in before[RO][token]
    assert db.secret(RO)["username"] == "airflow-ro-dml"
    aws.test_secret(RO, token)
    aws.finish_secret(RO, token)
    assert db.secret(RO)["username"] == "airflow-ro-dml_clone"
    assert db.can(RO, "SELECT 1")


# PostgreSQL only: the clone the tool prepares ------------------------------------------


def test_enabling_rotation_prepares_a_clone_that_acts_as_its_user(rds, rotation_function):
    report = enable_rotation(rds, rotation_function)

    ro = report["users"][2]
    assert ro["rotation"] == "enabled"
    assert "prepare rotation clone airflow-ro-dml_clone" in ro["changes"]
    with rds.superuser() as connection:
        clone = rds.run_sql(
            connection,
            """SELECT r.rolcanlogin, r.rolconfig, pg_has_role(r.oid, 'airflow-ro-dml', 'MEMBER')
               FROM pg_roles r WHERE rolname = 'airflow-ro-dml_clone'""",
        )
    assert clone == [(True, ["role=airflow-ro-dml"], True)]
    assert usernames(rds) == ["airflow-rw-ddl", "airflow-rw-dml", "airflow-ro-dml"]


def test_after_an_aws_rotation_the_clones_log_in_with_the_same_access(rds, rotation_function):
    rotated(rds, rotation_function, *SECRETS)

    assert usernames(rds) == [
        "airflow-rw-ddl_clone",
        "airflow-rw-dml_clone",
        "airflow-ro-dml_clone",
    ]
    with rds.login(DDL) as connection:  # the clone becomes its user at login
        assert rds.run_sql(connection, "SELECT session_user, current_user") == [
            ("airflow-rw-ddl_clone", "airflow-rw-ddl")
        ]
        rds.run_sql(connection, "CREATE TABLE after_rotation (x int)")
    with rds.superuser() as connection:
        owner = rds.run_sql(
            connection, "SELECT tableowner FROM pg_tables WHERE tablename = 'after_rotation'"
        )
    assert owner == [("airflow-rw-ddl",)]  # so the grantor's default privileges cover it
    assert rds.can(DML, "INSERT INTO after_rotation VALUES (1)")
    assert rds.can(RO, "SELECT * FROM after_rotation")
    assert not rds.can(RO, "INSERT INTO after_rotation VALUES (2)")


def test_a_privilege_change_reaches_the_clone(rds, rotation_function):
    rotated(rds, rotation_function, RO)
    with rds.login(DDL) as connection:
        rds.run_sql(connection, "CREATE TABLE t (x int)")
    assert not rds.can(RO, "INSERT INTO t VALUES (1)")
    event = with_rotation(rds, rotation_function)
    event["users"][2]["grant_privileges"] = "SELECT,INSERT"

    rds.invoke(event)

    assert rds.can(RO, "INSERT INTO t VALUES (1)")


@pytest.mark.parametrize("name", ['we"ird', "it's; DROP ROLE x", "Ünï code", "a=b,c"])
def test_a_hostile_names_clone_is_prepared_once_and_rotates(rds, rotation_function, name):
    event = rds.event(
        [{"db_user": name, "user_secret_name": "secret-hostile", "grant_privileges": "SELECT"}],
        rotation={"lambda_arn": rotation_function},
    )
    rds.invoke(event)
    rds.end_test_rotation("secret-hostile")
    assert {name, name + "_clone"} <= rds.roles()
    assert rds.invoke(event)["changed"] is False

    MultiUserRotation(rds.sm, "postgres").rotate("secret-hostile")

    with rds.login("secret-hostile") as connection:
        assert rds.run_sql(connection, "SELECT current_user") == [(name,)]
    assert rds.invoke(event)["changed"] is False


# MariaDB only: the clone the AWS function makes, with a copy of the grants --------------


def test_mariadb_after_an_aws_rotation_the_clones_have_the_same_access(maria, rotation_function):
    rotated(maria, rotation_function, *SECRETS)

    assert usernames(maria) == [
        "airflow-rw-ddl_clone",
        "airflow-rw-dml_clone",
        "airflow-ro-dml_clone",
    ]
    with maria.login(DDL) as connection:
        maria.run_sql(connection, "CREATE TABLE after_rotation (x int)")
    assert maria.can(DML, "INSERT INTO after_rotation VALUES (1)")
    assert maria.can(RO, "SELECT * FROM after_rotation")
    assert not maria.can(RO, "INSERT INTO after_rotation VALUES (2)")
    for user in ("airflow-rw-ddl", "airflow-rw-dml", "airflow-ro-dml"):
        assert maria.grants(user + "_clone") == maria.grants(user)


def test_mariadb_a_privilege_change_reaches_both_accounts(maria, rotation_function):
    rotated(maria, rotation_function, RO)
    event = with_rotation(maria, rotation_function)
    event["users"][2]["grant_privileges"] = "SELECT,INSERT"

    report = maria.invoke(event)

    assert maria.grants("airflow-ro-dml") == {"SELECT", "INSERT"}
    assert maria.grants("airflow-ro-dml_clone") == {"SELECT", "INSERT"}
    assert report["users"][2]["changes"] == [
        "grant INSERT on airflow.*",
        "grant INSERT on airflow.* for the rotation clone",
    ]
