"""Applying events to a real PostgreSQL (14 to 18) with an RDS-like master and moto's Secrets
Manager: every assertion looks at effects, by logging in with the secret's password and trying
what the application would try. The tests that take `db` are engine-neutral and run on MariaDB
too; tests/test_apply_mysql.py holds what is MariaDB's own."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import psycopg2
import pytest
from conftest import SEED, tool, user

DDL, DML, RO = (u["user_secret_name"] for u in SEED["users"])


def update_ro(db):
    """The seed's read-only user, with a new password."""
    return db.event(
        [
            user(
                "airflow-ro-dml",
                RO,
                action="update",
                grant_privileges="SELECT",
                grantor="airflow-rw-ddl",
            )
        ]
    )


def test_the_seed_example_creates_three_users_whose_secrets_log_in(db):
    report = db.invoke(db.seed_event())

    assert report["status"] == "success" and report["changed"] is True
    assert report["engine"] == db.ENGINE
    assert [(u["db_user"], u["result"]) for u in report["users"]] == [
        ("airflow-rw-ddl", "created"),
        ("airflow-rw-dml", "created"),
        ("airflow-ro-dml", "created"),
    ]
    for name in (DDL, DML, RO):
        with db.login(name) as connection:
            assert db.current_user(connection) == db.secret(name)["username"]
    assert {u["db_user"] for u in SEED["users"]} <= db.user_names()


def test_a_table_the_ddl_user_creates_later_is_usable_by_its_grantees(db):
    db.invoke(db.seed_event())
    with db.login(DDL) as connection:
        db.run_sql(connection, "CREATE TABLE dag_run (id serial PRIMARY KEY, state text)")

    assert db.can(DML, "INSERT INTO dag_run (state) VALUES ('queued')")
    assert db.can(DML, "UPDATE dag_run SET state = 'done'")
    assert db.can(DML, "DELETE FROM dag_run")
    assert db.can(RO, "SELECT * FROM dag_run")
    assert not db.can(RO, "INSERT INTO dag_run (state) VALUES ('queued')")
    assert not db.can(DML, "TRUNCATE dag_run")
    assert db.can(DDL, "TRUNCATE dag_run")


def test_only_the_ddl_user_may_create_tables(rds):
    with rds.as_master() as connection:  # before 15, PUBLIC may create in public: not our grant
        rds.run_sql(connection, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    rds.invoke(rds.seed_event())

    assert rds.can(DDL, "CREATE TABLE t (x int)")
    assert not rds.can(DML, "CREATE TABLE t (x int)")
    assert not rds.can(RO, "CREATE TABLE t (x int)")


def test_tables_that_exist_before_the_run_are_granted_too(rds):
    with rds.as_master() as connection:
        rds.run_sql(connection, "CREATE TABLE existing (id serial, x int)")

    rds.invoke(rds.seed_event())

    assert rds.can(DML, "INSERT INTO existing (x) VALUES (1)")  # sequence usage included
    assert rds.can(RO, "SELECT * FROM existing")
    assert not rds.can(RO, "DELETE FROM existing")


def test_a_second_identical_run_changes_nothing_and_adds_no_secret_version(db):
    db.invoke(db.seed_event())
    with db.login(DDL) as connection:
        db.run_sql(connection, "CREATE TABLE dag_run (id serial PRIMARY KEY)")
    versions = {name: db.versions(name) for name in (DDL, DML, RO)}

    report = db.invoke(db.seed_event())

    assert report["changed"] is False
    assert report["stats"]["sql_statements"] == 0
    assert {u["result"] for u in report["users"]} == {"unchanged"}
    assert {u["secret"]["result"] for u in report["users"]} == {"unchanged"}
    assert {name: db.versions(name) for name in (DDL, DML, RO)} == versions
    assert not {"PutSecretValue", "CreateSecret"} & set(report["stats"]["aws_calls"])


def test_the_secret_has_the_structure_the_aws_rotation_functions_read(rds):
    rds.invoke(rds.seed_event())

    value = rds.secret(DML)
    master_arn = rds.sm.describe_secret(SecretId=SEED["secret_name"])["ARN"]
    assert value == {
        "engine": "postgres",
        "host": rds.server.host,
        "port": rds.server.port,
        "username": "airflow-rw-dml",
        "password": value["password"],
        "dbname": "airflow",
        "masterarn": master_arn,
    }
    assert len(value["password"]) == 32
    assert not set(value["password"]) & set(tool.PASSWORD_EXCLUDED + " ")
    described = rds.sm.describe_secret(SecretId=DML)
    assert {"Key": "managed-by", "Value": "rds-initializer"} in described["Tags"]
    assert described["KmsKeyId"] == SEED["kms_key_id"]
    assert "airflow-rw-dml" in described["Description"]


def test_update_gives_a_new_password_through_awspending(db):
    db.invoke(db.seed_event())
    old = db.secret(RO)["password"]

    report = db.invoke(update_ro(db))

    assert report["users"][0]["result"] == "updated"
    assert report["users"][0]["changes"] == ["new password", "secret updated"]
    assert db.secret(RO)["password"] != old
    assert not db.logs_in("airflow-ro-dml", old)
    assert db.can(RO, "SELECT 1")
    stages = db.versions(RO)
    assert sorted(s for version in stages.values() for s in version) == [
        "AWSCURRENT",
        "AWSPREVIOUS",
    ]
    current = next(v for v, s in stages.items() if "AWSCURRENT" in s)
    assert current.startswith(tool.VERSION_PREFIX)


def test_changing_privileges_revokes_what_was_removed(db):
    db.invoke(db.seed_event())
    with db.login(DDL) as connection:
        db.run_sql(connection, "CREATE TABLE dag_run (id int)")
    narrower = db.seed_event()
    narrower["users"][1] = {**narrower["users"][1], "grant_privileges": "SELECT"}

    report = db.invoke(narrower)

    changes = report["users"][1]["changes"]
    assert f"revoke INSERT, UPDATE, DELETE on {db.grants_target(tables=1)}" in changes
    assert db.can(DML, "SELECT * FROM dag_run")
    assert not db.can(DML, "INSERT INTO dag_run VALUES (1)")
    with db.login(DDL) as connection:
        db.run_sql(connection, "CREATE TABLE later (id int)")
    assert not db.can(DML, "INSERT INTO later VALUES (1)")  # tables made later: narrowed too
    assert db.can(DML, "SELECT * FROM later")


def test_privileges_granted_by_hand_are_revoked_and_reported(db):
    db.invoke(db.seed_event())
    with db.login(DDL) as connection:
        db.run_sql(connection, "CREATE TABLE t (id int)")
    db.grant_by_hand("DELETE", "airflow-ro-dml", owner_secret=DDL)
    assert db.can(RO, "DELETE FROM t")

    report = db.invoke(db.seed_event())

    assert report["users"][2]["changes"] == [f"revoke DELETE on {db.grants_target(tables=1)}"]
    assert not db.can(RO, "DELETE FROM t")


def test_delete_removes_the_user_and_its_secret_and_hands_over_its_objects(rds):
    rds.invoke(rds.seed_event())
    with rds.login(DDL) as connection:
        rds.run_sql(connection, "CREATE TABLE dag_run (id int)")
    with rds.login(DML) as connection:
        rds.run_sql(connection, "SELECT 1")
    gone = rds.seed_event()
    gone["users"] = [
        user("airflow-ro-dml", RO, action="delete"),
        {**gone["users"][1], "action": "delete"},
    ]

    report = rds.invoke(gone)

    assert [(u["result"], u["secret"]["result"]) for u in report["users"]] == [
        ("deleted", "deleted"),
        ("deleted", "deleted"),
    ]
    assert {"airflow-ro-dml", "airflow-rw-dml"}.isdisjoint(rds.roles())
    assert "DeletedDate" in rds.sm.describe_secret(SecretId=RO)
    assert rds.invoke(gone)["changed"] is False  # deleting again: absent, nothing to do


def test_delete_reassigns_what_the_user_owns_to_its_grantor(rds):
    event = rds.event(
        [user("owner"), user("app", grant_ddl=True, grantor="owner", grant_privileges="SELECT")]
    )
    rds.invoke(event)
    with rds.login("secret-app") as connection:
        rds.run_sql(connection, "CREATE TABLE made_by_app (id int)")

    rds.invoke(rds.event([user("app", action="delete", grantor="owner")]))

    with rds.superuser() as connection:
        owner = rds.run_sql(
            connection, "SELECT tableowner FROM pg_tables WHERE tablename = 'made_by_app'"
        )
    assert owner == [("owner",)]


def test_a_grantor_chain_deleted_together_hands_each_ones_objects_up_the_chain(rds, capsys):
    """top <- middle <- leaf, and two grantees of top besides: each role's tables go to its
    grantor before that grantor goes, the last to the master; one REASSIGN per grantor and
    round, one DROP OWNED and one DROP ROLE per round, not three statements a role."""
    chain = [
        user("top", grant_ddl=True),
        user("middle", grant_ddl=True, grantor="top", grant_privileges="SELECT"),
        user("leaf", grant_ddl=True, grantor="middle", grant_privileges="SELECT"),
        user("side1", grant_ddl=True, grantor="top", grant_privileges="SELECT"),
        user("side2", grant_ddl=True, grantor="top", grant_privileges="SELECT"),
    ]
    rds.invoke(rds.event(chain))
    for name in ("middle", "leaf", "side1"):
        with rds.login(f"secret-{name}") as connection:
            rds.run_sql(connection, f"CREATE TABLE made_by_{name} (id int)")

    leaving = [{**entry, "action": "delete"} for entry in chain]
    _, statements = rds.invoke_at_debug(rds.event(leaving, secret_recovery_days=0), capsys)

    with rds.superuser() as connection:
        owners = dict(
            rds.run_sql(
                connection,
                "SELECT tablename, tableowner FROM pg_tables WHERE tablename LIKE 'made_by_%'",
            )
        )
    assert owners == {
        "made_by_middle": rds.master,
        "made_by_leaf": rds.master,
        "made_by_side1": rds.master,
    }
    assert not {"top", "middle", "leaf", "side1", "side2"} & rds.roles()
    verbs = [
        " ".join(s.split()[:2])
        for s in statements
        if s.startswith(("REASSIGN OWNED", "DROP OWNED", "DROP ROLE"))
    ]
    assert verbs == [
        *("REASSIGN OWNED", "REASSIGN OWNED", "DROP OWNED", "DROP ROLE"),  # leaf, side1, side2
        *("REASSIGN OWNED", "DROP OWNED", "DROP ROLE"),  # middle
        *("REASSIGN OWNED", "DROP OWNED", "DROP ROLE"),  # top
    ]


def test_a_role_with_privileges_in_another_database_is_not_deleted(rds):
    rds.invoke(rds.seed_event())
    with rds.as_master("postgres") as connection:
        rds.run_sql(connection, "CREATE DATABASE other")
        rds.run_sql(connection, 'GRANT CONNECT ON DATABASE other TO "airflow-ro-dml"')

    with pytest.raises(tool.InvalidEvent, match="'other'"):
        rds.invoke(rds.event([user("airflow-ro-dml", RO, action="delete")]))

    assert "airflow-ro-dml" in rds.roles()
    assert "DeletedDate" not in rds.sm.describe_secret(SecretId=RO)


def test_the_masters_memberships_stay_as_they_were(rds):
    before = rds.master_memberships()

    rds.invoke(rds.seed_event())
    with rds.login(DDL) as connection:
        rds.run_sql(connection, "CREATE TABLE t (id int)")
    rds.invoke(rds.seed_event(users=[{**u, "grant_privileges": "SELECT"} for u in SEED["users"]]))
    rds.invoke(rds.event([user("airflow-ro-dml", RO, action="delete")]))

    after = rds.master_memberships()
    added = after - before
    # 16+: CREATE ROLE gives its creator ADMIN OPTION, without INHERIT and without SET.
    assert all(admin and inherit is False and set_ is False for _, admin, inherit, set_ in added)
    assert rds.major >= 16 or not added


HOSTILE = [
    'quote"in"name',
    "x'@'%'; DROP DATABASE airflow; --",
    "`tick`",
    "MixedCase",
    "ünïcødé-名前",
    "per%cent_s %s",
    "back\\slash",
    "spaces  and\ttab",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_created_as_given_and_nothing_else_is_touched(db, name):
    with db.as_master() as connection:
        db.run_sql(connection, "CREATE TABLE t (id int)")
    users_before = db.user_names()
    event = db.event([user(name, "hostile", grant_privileges="SELECT")])

    report = db.invoke(event)

    assert report["users"][0]["result"] == "created"
    assert db.user_names() - users_before == {name}
    with db.login("hostile") as connection:
        assert db.current_user(connection) == name
    assert db.can("hostile", "SELECT * FROM t")
    assert not db.can("hostile", "DELETE FROM t")
    with db.as_master() as connection:
        assert db.run_sql(connection, "SELECT count(*) FROM t") == [(0,)]
    assert db.invoke(event)["changed"] is False


@pytest.mark.parametrize("name", ["pg_monitor", "rds_superuser", "rdsadmin", "PUBLIC", "x" * 64])
def test_reserved_and_overlong_names_are_refused_and_nothing_changes(rds, name):
    with pytest.raises(tool.InvalidEvent, match="reserved|longer than"):
        rds.invoke(rds.event([user(name), user("innocent")]))
    assert "innocent" not in rds.roles()
    assert len(rds.sm.list_secrets()["SecretList"]) == 1  # the master's only


def test_the_master_user_itself_is_refused(rds):
    with pytest.raises(tool.InvalidEvent, match="master user"):
        rds.invoke(rds.event([user(rds.master)]))


def test_a_superuser_is_refused(rds):
    with rds.superuser() as connection:
        rds.run_sql(connection, "CREATE ROLE boss SUPERUSER LOGIN")
    with pytest.raises(tool.InvalidEvent, match="superuser"):
        rds.invoke(rds.event([user("boss")]))


def test_a_grantor_that_does_not_exist_is_refused_before_anything_changes(db):
    with pytest.raises(tool.InvalidEvent, match="grantor 'ghost' does not exist"):
        db.invoke(db.event([user("app"), user("reader", grantor="ghost")]))
    assert "app" not in db.user_names()
    assert len(db.sm.list_secrets()["SecretList"]) == 1  # the master's only


def test_an_existing_role_can_be_the_grantor(rds):
    with rds.as_master() as connection:
        rds.run_sql(
            connection,
            "CREATE ROLE migrator LOGIN PASSWORD 'migrator-pw';"
            "GRANT CREATE ON SCHEMA public TO migrator",
        )
    rds.invoke(rds.event([user("reader", grantor="migrator", grant_privileges="SELECT")]))
    with rds.connect("migrator", "migrator-pw") as connection:
        rds.run_sql(connection, "CREATE TABLE made_later (id int)")

    assert rds.can("secret-reader", "SELECT * FROM made_later")


def test_a_missing_schema_is_refused(rds):
    with pytest.raises(tool.InvalidEvent, match="schema 'nope' does not exist"):
        rds.invoke(rds.event([user("app")], schemas=["public", "nope"]))


def test_several_schemas_are_managed(rds):
    with rds.as_master() as connection:
        rds.run_sql(connection, "CREATE SCHEMA sales; CREATE TABLE sales.orders (id int)")
    rds.invoke(
        rds.event(
            [
                user("owner", grant_ddl=True),
                user("reader", grantor="owner", grant_privileges="SELECT"),
            ],
            schemas=["public", "sales"],
        )
    )
    with rds.login("secret-owner") as connection:
        rds.run_sql(connection, "CREATE TABLE sales.later (id int)")

    assert rds.can("secret-reader", "SELECT * FROM sales.orders")
    assert rds.can("secret-reader", "SELECT * FROM sales.later")


def test_an_existing_user_without_a_secret_is_adopted_with_a_new_password(rds):
    with rds.as_master() as connection:
        rds.run_sql(connection, "CREATE ROLE legacy LOGIN CREATEDB PASSWORD 'old-password'")

    report = rds.invoke(rds.event([user("legacy", grant_privileges="SELECT")]))

    assert report["users"][0]["secret"]["result"] == "created"
    assert "set LOGIN NOCREATEDB NOCREATEROLE" in report["users"][0]["changes"]
    rds.login("secret-legacy").close()
    with pytest.raises(psycopg2.OperationalError):
        rds.connect("legacy", "old-password")


def test_verify_logins_repairs_a_password_changed_behind_the_tools_back(db):
    db.invoke(db.seed_event())
    db.set_password_by_hand("airflow-ro-dml", "changed-by-hand")

    assert db.invoke(db.seed_event())["changed"] is False  # not checked unless asked
    report = db.invoke(db.seed_event(verify_logins="yes"))

    assert report["users"][2]["changes"] == ["new password", "secret updated"]
    assert db.can(RO, "SELECT 1")


def test_a_secret_that_belongs_to_another_user_is_not_overwritten(db):
    db.sm.create_secret(Name="taken", SecretString='{"username": "someone", "password": "x"}')

    with pytest.raises(tool.InvalidEvent, match="belongs to user 'someone'"):
        db.invoke(db.event([user("app", "taken")]))

    assert db.secret("taken") == {"username": "someone", "password": "x"}
    assert "app" not in db.user_names()


def test_recreating_a_user_restores_its_secret_scheduled_for_deletion(rds):
    rds.invoke(rds.event([user("app", grant_privileges="SELECT")]))
    rds.invoke(rds.event([user("app", "secret-app", action="delete")]))
    assert "DeletedDate" in rds.sm.describe_secret(SecretId="secret-app")

    report = rds.invoke(rds.event([user("app", grant_privileges="SELECT")]))

    assert report["users"][0]["result"] == "created"
    assert "DeletedDate" not in rds.sm.describe_secret(SecretId="secret-app")
    rds.login("secret-app").close()


def test_a_secret_that_drifted_is_rewritten_and_reported(rds):
    """Drift in what does not say which database the secret is for (a port, a host, an engine
    or a dbname of another database is refused: tests/test_ownership.py)."""
    rds.invoke(rds.event([user("app")]))
    value = rds.secret("secret-app")
    rds.sm.put_secret_value(
        SecretId="secret-app", SecretString=tool.json.dumps({**value, "masterarn": "arn:old"})
    )

    report = rds.invoke(rds.event([user("app")]))

    assert report["users"][0]["changes"] == ["secret updated"]
    assert report["users"][0]["result"] == "updated"
    assert rds.secret("secret-app") == value


def test_existing_keys_a_person_added_to_the_secret_are_kept(rds):
    rds.invoke(rds.event([user("app")]))
    value = rds.secret("secret-app")
    rds.sm.put_secret_value(
        SecretId="secret-app", SecretString=tool.json.dumps({**value, "note": "owned by team X"})
    )

    assert rds.invoke(rds.event([user("app")]))["changed"] is False
    rds.invoke(rds.event([user("app", action="update")]))

    assert rds.secret("secret-app")["note"] == "owned by team X"


def test_an_rds_managed_master_secret_with_only_username_and_password_works(rds):
    rds.sm.put_secret_value(
        SecretId=SEED["secret_name"],
        SecretString=tool.json.dumps({"username": rds.master, "password": rds.master_password}),
    )

    report = rds.invoke(rds.seed_event())

    assert report["status"] == "success"
    rds.login(DML).close()


def test_dry_run_executes_and_rolls_back_and_writes_no_secret(rds):
    report = rds.invoke(rds.seed_event(dry_run="true"))

    assert report["status"] == "dry_run" and report["changed"] is True
    assert any(
        s.startswith('CREATE ROLE "airflow-rw-ddl"') and "PASSWORD '***'" in s
        for s in report["sql"]
    )
    assert "airflow-rw-ddl" not in rds.roles()
    assert len(rds.sm.list_secrets()["SecretList"]) == 1
    assert not {"CreateSecret", "PutSecretValue", "GetRandomPassword"} & set(
        report["stats"]["aws_calls"]
    )


def test_a_role_the_master_cannot_act_as_is_refused_before_anything_changes(rds):
    with rds.superuser() as connection:
        # A schema of a role the master did not create: on 16+ it has no ADMIN OPTION on it.
        rds.run_sql(connection, "CREATE ROLE stranger; CREATE SCHEMA locked AUTHORIZATION stranger")
    event = rds.event([user("app")], schemas=["locked"])

    if rds.major >= 16:
        with pytest.raises(tool.InvalidEvent, match="needs ADMIN OPTION on 'stranger'"):
            rds.invoke(event)
        assert "app" not in rds.roles()
    else:  # before 16, CREATEROLE may act as any role that is not a superuser
        assert rds.invoke(event)["users"][0]["result"] == "created"


def test_an_applications_lock_makes_a_delete_fail_cleanly_after_the_lock_timeout(rds, monkeypatch):
    rds.invoke(rds.event([user("app", grant_ddl=True)]))
    with rds.login("secret-app") as connection:
        rds.run_sql(connection, "CREATE TABLE busy (id int)")
    monkeypatch.setenv("DB_LOCK_TIMEOUT", "0.3")
    application = rds.login("secret-app")
    application.autocommit = False
    rds.run_sql(application, "SELECT * FROM busy")  # an open transaction holds a read lock
    delete = rds.event([user("app", "secret-app", action="delete")])
    try:
        # the dry run executes the SQL, so it meets the same lock as the real run
        for event in ({**delete, "dry_run": True}, delete):
            with pytest.raises(tool.ApplyError, match="lock timeout"):
                rds.invoke(event)
    finally:
        application.rollback()
        application.close()
    assert "app" in rds.roles()
    assert "DeletedDate" not in rds.sm.describe_secret(SecretId="secret-app")


def test_views_are_granted_like_tables(rds):
    rds.invoke(rds.seed_event())
    with rds.login(DDL) as connection:
        rds.run_sql(connection, "CREATE TABLE t (id int); CREATE VIEW v AS SELECT * FROM t")

    assert rds.can(RO, "SELECT * FROM v")
    assert rds.invoke(rds.seed_event())["changed"] is False


def test_delete_with_reassign_to_hands_the_objects_to_that_role(rds):
    rds.invoke(rds.event([user("heir"), user("app", grant_ddl=True)]))
    with rds.login("secret-app") as connection:
        rds.run_sql(connection, "CREATE TABLE legacy (id int)")

    rds.invoke(rds.event([user("app", "secret-app", action="delete", reassign_to="heir")]))

    assert rds.can("secret-heir", "DROP TABLE legacy")  # only an owner may drop it


def test_a_hostile_schema_name_is_quoted(rds):
    schema = 'my "schema"; DROP TABLE t; --'
    with rds.as_master() as connection:
        rds.run_sql(
            connection,
            f'CREATE TABLE t (id int); CREATE SCHEMA "{schema.replace(chr(34), 2 * chr(34))}"',
        )
    rds.invoke(rds.event([user("owner", grant_ddl=True)], schemas=[schema]))

    quoted = schema.replace('"', '""')
    assert rds.can("secret-owner", f'CREATE TABLE "{quoted}".mine (id int)')
    with rds.as_master() as connection:
        assert rds.run_sql(connection, "SELECT count(*) FROM t") == [(0,)]


def test_concurrent_invocations_take_turns(rds):
    events = [rds.event([user(f"user{i}", grant_privileges="SELECT")]) for i in range(4)]
    errors = []

    def invoke(event):
        try:
            rds.invoke(event)
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=invoke, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert {f"user{i}" for i in range(4)} <= rds.roles()


def test_an_invocation_waits_for_another_one_while_it_has_time(db):
    other_invocation = db.hold_the_tools_lock()
    release = threading.Timer(1.0, other_invocation.close)  # its end releases the lock
    release.start()
    report = db.invoke(db.seed_event())  # waits about a second, then runs
    release.join()
    assert report["status"] == "success"


def test_when_the_time_is_up_waiting_for_another_invocation_it_fails_cleanly(rds):
    nearly_over = tool.Deadline.MARGIN_MS + 300
    context = SimpleNamespace(aws_request_id="t", get_remaining_time_in_millis=lambda: nearly_over)
    with rds.as_master("postgres") as other_invocation:
        rds.run_sql(other_invocation, "SELECT pg_advisory_lock(%s)", tool.LOCK_KEY)
        with pytest.raises(tool.ApplyError, match="another rds-initializer invocation"):
            tool.lambda_handler(rds.seed_event(), context)
    assert "airflow-rw-ddl" not in rds.roles()


# Killing an invocation between its steps never loses a working password: each test stops the
# run at one point (a BaseException, as abrupt as a dying Lambda: no handler of the tool sees
# it, and the dropped connection aborts the transaction) and checks that the next run repairs.


class Killed(BaseException):
    pass


def die(*_args, **_kwargs):
    raise Killed


def test_killed_after_storing_new_passwords_the_next_run_creates_the_roles_with_them(
    rds, monkeypatch
):
    with monkeypatch.context() as patch:
        patch.setattr(tool.Postgres, "execute", die)
        with pytest.raises(Killed):
            rds.invoke(rds.seed_event())
    assert "airflow-rw-ddl" not in rds.roles()
    stored = {name: rds.versions(name) for name in (DDL, DML, RO)}

    report = rds.invoke(rds.seed_event())

    assert {u["result"] for u in report["users"]} == {"created"}
    assert {name: rds.versions(name) for name in (DDL, DML, RO)} == stored  # same passwords
    for name in (DDL, DML, RO):
        rds.login(name).close()


def pending_versions(rds, name: str) -> list[str]:
    return [v for v, stages in rds.versions(name).items() if "AWSPENDING" in stages]


def test_killed_before_the_database_changed_the_next_run_undoes_the_staged_password(
    rds, monkeypatch
):
    rds.invoke(rds.seed_event())
    current = rds.secret(RO)["password"]
    with monkeypatch.context() as patch:
        patch.setattr(tool.Postgres, "execute", die)
        with pytest.raises(Killed):
            rds.invoke(update_ro(rds))
    assert pending_versions(rds, RO)[0].startswith(tool.VERSION_PREFIX)
    rds.login(RO).close()  # AWSCURRENT still works: the database was not changed

    report = rds.invoke(rds.seed_event())

    assert "undo an interrupted password change" in report["users"][2]["changes"]
    assert pending_versions(rds, RO) == []
    assert rds.secret(RO)["password"] == current
    rds.login(RO).close()


def test_killed_after_the_database_changed_the_next_run_finishes_the_change(db, monkeypatch):
    db.invoke(db.seed_event())
    with monkeypatch.context() as patch:
        patch.setattr(tool.SecretWriter, "promote", die)
        with pytest.raises(Killed):
            db.invoke(update_ro(db))
    current = db.secret(RO)  # the database has the new password, AWSCURRENT the old one
    assert not db.logs_in(current["username"], current["password"])
    staged = db.secret(RO, "AWSPENDING")["password"]

    report = db.invoke(db.seed_event())

    assert "finish an interrupted password change" in report["users"][2]["changes"]
    assert db.secret(RO)["password"] == staged
    assert pending_versions(db, RO) == []
    assert db.can(RO, "SELECT 1")
    assert db.invoke(db.seed_event())["changed"] is False


def test_a_rotation_in_progress_is_left_alone(rds):
    rds.invoke(rds.seed_event())
    value = rds.secret(RO)
    rds.sm.put_secret_value(
        SecretId=RO,
        SecretString=tool.json.dumps({**value, "password": "p"}),
        VersionStages=["AWSPENDING"],
        ClientRequestToken="0f5d8c1e-3b5a-4e8e-9a55-6f2d3a1b7c90",
    )

    assert rds.invoke(rds.seed_event())["changed"] is False
    with pytest.raises(tool.InvalidEvent, match="rotation in progress"):
        rds.invoke(update_ro(rds))

    assert pending_versions(rds, RO) == ["0f5d8c1e-3b5a-4e8e-9a55-6f2d3a1b7c90"]
    rds.login(RO).close()


def test_all_privileges_follow_the_server_version(rds):
    with rds.as_master() as connection:
        rds.run_sql(connection, "CREATE TABLE t (id int)")
    rds.invoke(rds.event([user("admin", grant_privileges="ALL")]))

    assert rds.can("secret-admin", "TRUNCATE t")
    assert rds.can("secret-admin", "DELETE FROM t")
    assert rds.invoke(rds.event([user("admin", grant_privileges="ALL")]))["changed"] is False
    if rds.major >= 17:
        assert rds.can("secret-admin", "REINDEX TABLE t")  # needs MAINTAIN
        rds.invoke(rds.event([user("admin", grant_privileges="SELECT")]))
        assert not rds.can("secret-admin", "REINDEX TABLE t")


def test_maintain_is_refused_before_postgresql_17(rds):
    event = rds.event([user("admin", grant_privileges="SELECT, MAINTAIN")])
    if rds.major < 17:
        with pytest.raises(tool.InvalidEvent, match="MAINTAIN needs PostgreSQL 17"):
            rds.invoke(event)
    else:
        assert rds.invoke(event)["users"][0]["result"] == "created"


def test_a_delete_killed_before_deleting_the_secret_is_finished_by_the_next_run(rds, monkeypatch):
    rds.invoke(rds.seed_event())
    delete = rds.event([user("airflow-ro-dml", RO, action="delete")])
    with monkeypatch.context() as patch:
        patch.setattr(tool.SecretWriter, "delete", die)
        with pytest.raises(Killed):
            rds.invoke(delete)
    # The secret is deleted before the transaction commits: killed there, nothing changed.
    assert "airflow-ro-dml" in rds.roles()
    assert "DeletedDate" not in rds.sm.describe_secret(SecretId=RO)
    assert rds.can(RO, "SELECT 1")

    report = rds.invoke(delete)

    assert report["users"][0]["result"] == "deleted"  # its secret, this time
    assert "DeletedDate" in rds.sm.describe_secret(SecretId=RO)


def test_killed_while_adopting_a_user_without_a_secret_the_next_run_repairs_it(rds, monkeypatch):
    with rds.as_master() as connection:
        rds.run_sql(connection, "CREATE ROLE legacy LOGIN PASSWORD 'old-password'")
    with monkeypatch.context() as patch:
        patch.setattr(tool.Postgres, "execute", die)
        with pytest.raises(Killed):
            rds.invoke(rds.event([user("legacy")]))
    # The new secret's first version is AWSCURRENT already, but the role never got it.
    with pytest.raises(psycopg2.OperationalError):
        rds.login("secret-legacy")

    rds.invoke(rds.event([user("legacy")]))

    rds.login("secret-legacy").close()
    assert pending_versions(rds, "secret-legacy") == []
    assert rds.invoke(rds.event([user("legacy")]))["changed"] is False


# Rotation. moto stands in for AWS as tests/test_secrets.py pins down: it looks the function up
# but runs none, and keeps only AutomaticallyAfterDays of the rules.


@pytest.fixture
def writes(monkeypatch):
    """Every Secrets Manager write the tool makes, in order, as (operation, arguments)."""
    made = []
    write = tool.SecretsManager.write

    def recording(self, operation, **arguments):
        made.append((operation, arguments))
        return write(self, operation, **arguments)

    monkeypatch.setattr(tool.SecretsManager, "write", recording)
    return made


def app_with(rds, rotation: dict | None = None, **keys):
    """One user, app, with its own rotation."""
    return rds.event([user("app", rotation=rotation, **keys)] if rotation else [user("app")])


def rotation_of(rds, name: str = "secret-app") -> tuple:
    found = rds.sm.describe_secret(SecretId=name)
    return found.get("RotationEnabled"), found.get("RotationLambdaARN"), found.get("RotationRules")


def test_rotation_with_the_events_function_is_enabled_by_one_call(rds, rotation_function):
    report = rds.invoke(app_with(rds, {"lambda_arn": rotation_function}))

    (app,) = report["users"]
    assert app["rotation"] == "enabled" and app["result"] == "created"
    assert f"rotation enabled (every 30 days, function {rotation_function})" in app["changes"]
    assert report["stats"]["aws_calls"]["RotateSecret"] == 1
    assert rotation_of(rds) == (True, rotation_function, {"AutomaticallyAfterDays": 30})
    rds.login("secret-app").close()


def test_a_second_run_makes_no_rotation_call_and_changes_nothing(rds, rotation_function):
    event = app_with(rds, {"lambda_arn": rotation_function})
    rds.invoke(event)

    report = rds.invoke(event)

    assert report["changed"] is False
    assert report["users"][0]["rotation"] == "unchanged" and report["users"][0]["changes"] == []
    assert not {"RotateSecret", "CancelRotateSecret"} & set(report["stats"]["aws_calls"])


def test_a_new_schedule_is_one_call(rds, rotation_function):
    rds.invoke(app_with(rds, {"lambda_arn": rotation_function}))
    rds.end_test_rotation("secret-app")

    report = rds.invoke(app_with(rds, {"lambda_arn": rotation_function, "days": 7}))

    (app,) = report["users"]
    assert (report["changed"], app["result"], app["rotation"]) == (True, "updated", "updated")
    assert app["changes"] == [f"rotation updated (every 7 days, function {rotation_function})"]
    assert report["stats"]["aws_calls"]["RotateSecret"] == 1
    assert rotation_of(rds)[2] == {"AutomaticallyAfterDays": 7}


def test_rotation_turned_off_is_one_cancel_and_then_nothing(rds, rotation_function):
    rds.invoke(app_with(rds, {"lambda_arn": rotation_function}))
    off = app_with(rds, {"enabled": False})

    report = rds.invoke(off)

    assert report["users"][0]["rotation"] == "disabled"
    assert "rotation disabled" in report["users"][0]["changes"]
    assert report["stats"]["aws_calls"]["CancelRotateSecret"] == 1
    assert rotation_of(rds)[0] is False
    again = rds.invoke(off)
    assert again["changed"] is False and "CancelRotateSecret" not in again["stats"]["aws_calls"]


def test_an_event_without_rotation_leaves_the_secrets_rotation_as_it_is(rds, rotation_function):
    rds.invoke(app_with(rds, {"lambda_arn": rotation_function}))

    report = rds.invoke(app_with(rds))

    assert report["changed"] is False
    assert rotation_of(rds) == (True, rotation_function, {"AutomaticallyAfterDays": 30})


def test_without_a_function_of_its_own_the_engines_aws_function_rotates(
    rds, rotation_function, monkeypatch
):
    monkeypatch.setenv("ROTATION_LAMBDA_ARN_POSTGRES", rotation_function)

    report = rds.invoke(rds.seed_event(rotation={}))

    assert {u["rotation"] for u in report["users"]} == {"enabled"}
    assert report["stats"]["aws_calls"]["RotateSecret"] == 3
    for name in (DDL, DML, RO):
        assert rotation_of(rds, name) == (True, rotation_function, {"AutomaticallyAfterDays": 30})


def test_without_the_engines_aws_function_nothing_is_touched(rds, monkeypatch):
    monkeypatch.delenv("ROTATION_LAMBDA_ARN_POSTGRES", raising=False)
    roles = rds.roles()

    with pytest.raises(tool.InvalidEvent, match="ROTATION_LAMBDA_ARN_POSTGRES") as caught:
        rds.invoke(rds.seed_event(rotation={}))

    assert "SecretsManagerRDSPostgreSQLRotationMultiUser" in str(caught.value)
    assert rds.roles() == roles
    assert [s["Name"] for s in rds.sm.list_secrets()["SecretList"]] == [rds.secret_name]


def test_a_dry_run_reports_the_rotation_change_and_makes_no_call(rds, rotation_function):
    rds.invoke(app_with(rds))

    report = rds.invoke({**app_with(rds, {"lambda_arn": rotation_function}), "dry_run": True})

    assert report["changed"] is True and report["users"][0]["rotation"] == "enabled"
    assert "RotateSecret" not in report["stats"]["aws_calls"]
    assert rotation_of(rds) == (None, None, None)


def test_rotation_is_set_once_the_new_password_is_current(rds, rotation_function, writes):
    rds.invoke(app_with(rds))
    secret_arn = rds.sm.describe_secret(SecretId="secret-app")["ARN"]

    rds.invoke(app_with(rds, {"lambda_arn": rotation_function}, action="update"))

    operations = [op for op, arguments in writes if arguments.get("SecretId") == secret_arn]
    assert operations == [
        "put_secret_value",  # AWSPENDING
        "update_secret_version_stage",  # AWSCURRENT
        "update_secret_version_stage",  # AWSPENDING label dropped
        "rotate_secret",
    ]
    rds.login("secret-app").close()


def test_schedule_window_and_rotate_immediately_go_to_rotate_secret(rds, rotation_function, writes):
    rotation = {
        "lambda_arn": rotation_function,
        "schedule": "cron(0 16 1,15 * ? *)",
        "duration": "2h",
        "rotate_immediately": True,
    }

    report = rds.invoke(app_with(rds, rotation))

    (rotate,) = [arguments for op, arguments in writes if op == "rotate_secret"]
    assert rotate["RotationLambdaARN"] == rotation_function
    assert rotate["RotationRules"] == {
        "ScheduleExpression": "cron(0 16 1,15 * ? *)",
        "Duration": "2h",
    }
    assert rotate["RotateImmediately"] is True
    assert "ClientRequestToken" not in rotate  # the rotation's version id must not look like ours
    assert report["users"][0]["changes"][-1] == (
        "rotation enabled (cron(0 16 1,15 * ? *), window 2h, rotating now, "
        f"function {rotation_function})"
    )


def test_a_rotation_in_progress_blocks_new_settings_but_not_turning_it_off(rds, rotation_function):
    rds.invoke(app_with(rds, {"lambda_arn": rotation_function}))
    # moto's leftover AWSPENDING (see Rds.end_test_rotation) is a rotation in progress here.

    with pytest.raises(tool.InvalidEvent, match="has a rotation in progress") as caught:
        rds.invoke(app_with(rds, {"lambda_arn": rotation_function, "days": 7}))
    assert "update-secret-version-stage" in str(caught.value)
    assert rotation_of(rds)[2] == {"AutomaticallyAfterDays": 30}

    report = rds.invoke(app_with(rds, {"enabled": False}))
    assert report["users"][0]["rotation"] == "disabled"


def test_a_deleted_users_secret_is_deleted_whatever_the_rotation(rds, rotation_function):
    rds.invoke(app_with(rds, {"lambda_arn": rotation_function}))

    report = rds.invoke(
        rds.event(
            [user("app", "secret-app", action="delete")], rotation={"lambda_arn": rotation_function}
        )
    )

    assert report["users"][0]["rotation"] == "unchanged"
    assert report["users"][0]["secret"]["result"] == "deleted"
    assert not {"RotateSecret", "CancelRotateSecret"} & set(report["stats"]["aws_calls"])


def test_a_delete_is_refused_while_the_user_holds_privileges_outside_the_events_schemas(rds):
    """DROP OWNED cannot take what another role granted, so a role with privileges in a schema
    the event does not manage would fail to drop half-way: refused first, with the fix."""
    rds.invoke(rds.seed_event())
    with rds.superuser() as connection:
        rds.run_sql(connection, "CREATE SCHEMA reporting")
        rds.run_sql(connection, "CREATE TABLE reporting.legacy_export (x int)")
        rds.run_sql(connection, 'GRANT SELECT ON reporting.legacy_export TO "airflow-ro-dml"')
    delete = rds.seed_event()
    delete["users"] = [user("airflow-ro-dml", RO, action="delete")]

    with pytest.raises(tool.InvalidEvent, match="schema 'reporting' of this database"):
        rds.invoke(delete)
    assert "airflow-ro-dml" in rds.roles()

    with rds.superuser() as connection:  # the master may act for the owner of what it manages
        rds.run_sql(connection, f'ALTER SCHEMA reporting OWNER TO "{rds.master}"')
        rds.run_sql(connection, f'ALTER TABLE reporting.legacy_export OWNER TO "{rds.master}"')
        rds.run_sql(connection, 'REVOKE SELECT ON reporting.legacy_export FROM "airflow-ro-dml"')
        rds.run_sql(
            connection,
            f'SET ROLE "{rds.master}"; GRANT SELECT ON reporting.legacy_export TO "airflow-ro-dml"',
        )
    rds.invoke({**delete, "schemas": ["public", "reporting"]})
    assert "airflow-ro-dml" not in rds.roles()
