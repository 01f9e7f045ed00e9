"""The endpoint as AWS serves it (issue 21): readers and replicas, servers that turn read-only
mid-run, paused Aurora Serverless v2 instances, password policies, expired and locked
accounts, createrole_self_grant, KMS keys, engine versions, proxies, notices and denied bulk
reads. Replicas are played by a real hot standby (pg_basebackup -R), read-only transactions
by default_transaction_read_only, a MariaDB replica by read_only set by the server's admin."""

from __future__ import annotations

import contextlib
import copy
import time
from types import SimpleNamespace

import pytest
from conftest import SEED, tool, user
from endpoints import ResumingEndpoint

from dev.servers import catch_up, moto_client, start_standby

SEED_SECRETS = [u["user_secret_name"] for u in SEED["users"]]


# --- helpers ---------------------------------------------------------------------------------


def secrets_snapshot(sm) -> dict[str, dict]:
    """Every secret with its versions and their labels, and whether it is scheduled for
    deletion: what any Secrets Manager write would change."""
    snapshot = {}
    for entry in sm.list_secrets(IncludePlannedDeletion=True)["SecretList"]:
        described = sm.describe_secret(SecretId=entry["ARN"])
        snapshot[entry["Name"]] = {
            "versions": described.get("VersionIdsToStages"),
            "deleted": "DeletedDate" in described,
            "tags": sorted((t["Key"], t["Value"]) for t in described.get("Tags", [])),
        }
    return snapshot


def with_action(event: dict, action: str) -> dict:
    event = copy.deepcopy(event)
    for entry in event["users"]:
        entry["action"] = action
    return event


def the_four_events(db, legacy: str, **where) -> dict[str, dict]:
    """create (a new user), update (new passwords for the seed's users), adoption (an
    existing account without a secret) and delete (the seed's users), all aimed at `where`."""
    seed = db.seed_event(**where)
    return {
        "create": db.event([user("newcomer", grant_privileges="SELECT")], **where),
        "update": with_action(seed, "update"),
        "adoption": db.event([user(legacy, grant_privileges="SELECT")], **where),
        "delete": with_action(seed, "delete"),
    }


def refused_as_read_only(db, events: dict[str, dict], cause: str) -> None:
    """Each event, run and dry-run, is refused (InvalidEvent) naming the cause, and writes
    nothing to Secrets Manager; the seed's secrets still log in."""
    before = secrets_snapshot(db.sm)
    users_before = db.user_names()
    for name, event in events.items():
        for dry_run in (False, True):
            with pytest.raises(tool.InvalidEvent) as refused:
                db.invoke({**event, "dry_run": dry_run})
            message = str(refused.value)
            assert "does not accept writes" in message, (name, dry_run, message)
            assert cause in message, (name, dry_run, message)
            assert "use the writer (cluster) endpoint" in message
    assert secrets_snapshot(db.sm) == before
    assert db.user_names() == users_before
    for secret in SEED_SECRETS:
        with db.login(secret) as connection:
            assert db.run_sql(connection, "SELECT 1") == [(1,)]


# --- 1. a server that does not accept writes ---------------------------------------------


@pytest.fixture(scope="module")
def standby(pg_server, tmp_path_factory):
    server = start_standby(pg_server, tmp_path_factory.mktemp(f"standby{pg_server.major}"))
    yield server
    server.stop()


def test_a_hot_standby_is_refused_before_any_secret_is_written(rds, standby, tmp_path):
    rds.invoke(rds.seed_event())
    with rds.as_master() as connection:
        rds.run_sql(connection, "CREATE ROLE legacy LOGIN PASSWORD 'legacy-pw'")
    catch_up(rds.server, standby)
    on_standby = {"rds_host": standby.host, "rds_port": standby.port}

    refused_as_read_only(rds, the_four_events(rds, "legacy", **on_standby), "hot standby")

    done = rds.cli(rds.event([user("newcomer")], **on_standby))
    assert done.returncode == 2, done.stderr
    assert "pg_is_in_recovery() is true" in done.stderr


def test_read_only_transactions_are_refused_before_any_secret_is_written(rds):
    rds.invoke(rds.seed_event())
    with rds.as_master() as connection:
        rds.run_sql(connection, "CREATE ROLE legacy LOGIN PASSWORD 'legacy-pw'")
    with rds.superuser() as connection:
        rds.run_sql(
            connection, f'ALTER DATABASE "{rds.database}" SET default_transaction_read_only = on'
        )

    refused_as_read_only(rds, the_four_events(rds, "legacy"), "transaction_read_only is on")


def test_a_read_only_mariadb_is_refused_before_any_secret_is_written(maria):
    maria.invoke(maria.seed_event())
    with maria.root() as connection:
        maria.run_sql(connection, "CREATE USER legacy@'%%' IDENTIFIED BY 'legacy-pw'")
        maria.run_sql(connection, "SET GLOBAL read_only = ON")
    try:
        refused_as_read_only(maria, the_four_events(maria, "legacy"), "read_only is on")
        done = maria.cli(maria.seed_event())
        assert done.returncode == 2, done.stderr
    finally:
        with maria.root() as connection:
            maria.run_sql(connection, "SET GLOBAL read_only = OFF")


def test_a_mariadb_that_turns_read_only_mid_run_fails_with_the_truth(maria, monkeypatch):
    """The secrets are written, then the server turns read-only (a failover): the run fails
    saying so; a re-run is refused before writing while it stays read-only, and converges
    once it accepts writes again."""
    check = tool.Deadline.check

    def failover(self, before: str) -> None:
        if before == "changing the database":
            with maria.root() as connection:
                maria.run_sql(connection, "SET GLOBAL read_only = ON")
        check(self, before)

    monkeypatch.setattr(tool.Deadline, "check", failover)
    try:
        with pytest.raises(tool.ApplyError) as failed:
            maria.invoke(maria.seed_event())
        assert "turned read-only during the run" in str(failed.value)
        assert "a re-run converges." not in str(failed.value)
        monkeypatch.setattr(tool.Deadline, "check", check)
        before = secrets_snapshot(maria.sm)
        with pytest.raises(tool.InvalidEvent, match="does not accept writes"):
            maria.invoke(maria.seed_event())
        assert secrets_snapshot(maria.sm) == before
    finally:
        with maria.root() as connection:
            maria.run_sql(connection, "SET GLOBAL read_only = OFF")

    maria.invoke(maria.seed_event())
    for secret in SEED_SECRETS:
        with maria.login(secret) as connection:
            assert maria.run_sql(connection, "SELECT 1") == [(1,)]


def test_a_postgresql_transaction_refused_as_read_only_mid_run_fails_with_the_truth(
    rds, monkeypatch
):
    """After the secrets are written, the server answers the run's statements as a demoted
    writer does (SQLSTATE 25006, played by an event trigger on GRANT): the transaction is
    rolled back, the error says why and when a re-run converges, and it does."""
    check = tool.Deadline.check

    def failover(self, before: str) -> None:
        if before == "changing the database":
            with rds.superuser(rds.database) as connection:
                rds.run_sql(
                    connection,
                    """CREATE FUNCTION demoted() RETURNS event_trigger LANGUAGE plpgsql AS $$
                       BEGIN RAISE EXCEPTION 'cannot execute % in a read-only transaction',
                             tg_tag USING ERRCODE = 'read_only_sql_transaction'; END $$;
                       CREATE EVENT TRIGGER demoted ON ddl_command_start
                       WHEN TAG IN ('GRANT') EXECUTE FUNCTION demoted()""",
                )
        check(self, before)

    monkeypatch.setattr(tool.Deadline, "check", failover)
    with pytest.raises(tool.ApplyError) as failed:
        rds.invoke(rds.seed_event())
    monkeypatch.setattr(tool.Deadline, "check", check)
    with rds.superuser(rds.database) as connection:
        rds.run_sql(connection, "DROP EVENT TRIGGER demoted")

    message = str(failed.value)
    assert "read-only transaction" in message and "rolled back" in message
    assert "turned read-only during the run" in message
    assert not {u["db_user"] for u in SEED["users"]} & rds.user_names()
    rds.invoke(rds.seed_event())
    for secret in SEED_SECRETS:
        with rds.login(secret) as connection:
            assert rds.run_sql(connection, "SELECT 1") == [(1,)]


def test_a_statement_refused_as_read_only_is_told_from_other_failures():
    steps = [tool.Step("CREATE ROLE x", "create user", ("x",))]
    standby = SimpleNamespace(pgcode="25006")
    assert tool.POSTGRES.read_only_error(standby)  # type: ignore[attr-defined]
    assert not tool.POSTGRES.read_only_error(SimpleNamespace(pgcode="42501"))  # type: ignore[attr-defined]
    mysql_read_only = tool.pymysql.err.OperationalError(
        1290, "The MariaDB server is running with the --read-only option"
    )
    assert tool.MARIADB.read_only_error(mysql_read_only)  # type: ignore[attr-defined]
    assert tool.MARIADB.read_only_error(tool.pymysql.err.OperationalError(1836, "read-only"))  # type: ignore[attr-defined]
    strict = tool.pymysql.err.OperationalError(
        1290, "running with the --strict-password-validation option"
    )
    assert not tool.MARIADB.read_only_error(strict)  # type: ignore[attr-defined]

    message = str(tool.step_failed(steps, 1, Exception("no"), "Rolled back.", read_only=True))
    assert "turned read-only during the run" in message
    assert "refused before it writes anything" in message


@pytest.mark.parametrize(
    ("host", "says_reader"),
    [
        ("app.cluster-ro-abcdefghijkl.us-east-1.rds.amazonaws.com", True),
        ("app.cluster-abcdefghijkl.us-east-1.rds.amazonaws.com", False),
        ("app-replica-1.abcdefghijkl.us-east-1.rds.amazonaws.com", False),
    ],
)
def test_a_reader_endpoint_is_named_as_such(host, says_reader):
    target = tool.Target("postgres", host, 5432, "db", "master", "pw", "arn", "require")
    state = SimpleNamespace(read_only="the server is a hot standby")

    (problem,) = tool.read_only_problems(target, state)  # type: ignore[arg-type]

    assert "does not accept writes: the server is a hot standby" in problem
    assert ("contains '-ro-'" in problem) is says_reader
    assert tool.read_only_problems(target, SimpleNamespace(read_only=None)) == []  # type: ignore[arg-type]


# --- 2. a paused Aurora Serverless v2 instance -----------------------------------------------


@pytest.fixture
def resuming():
    endpoints: list[ResumingEndpoint] = []

    def start(server, pause: float = 18) -> ResumingEndpoint:
        endpoints.append(ResumingEndpoint((server.host, server.port), pause))
        return endpoints[-1]

    yield start
    for endpoint in endpoints:
        endpoint.close()


def test_the_seed_event_waits_for_a_paused_postgresql_instance_to_resume(rds, resuming):
    seed_through_a_resume(rds, resuming(rds.server))


def test_the_seed_event_waits_for_a_paused_mariadb_instance_to_resume(maria, resuming):
    seed_through_a_resume(maria, resuming(maria.server))


def seed_through_a_resume(db, endpoint: ResumingEndpoint) -> None:
    """The seed event with default settings through an endpoint that holds the first
    connection 18 s (one test per engine family: each waits that long)."""
    started = time.monotonic()

    report = db.invoke(db.seed_event(rds_port=endpoint.port))

    assert time.monotonic() - started >= 17
    assert report["status"] == "success" and report["changed"] is True
    assert endpoint.connections >= 2  # the held one, then the others at once
    for secret in SEED_SECRETS:
        assert db.secret(secret)["port"] == endpoint.port
        with db.login(secret) as connection:
            assert db.run_sql(connection, "SELECT 1") == [(1,)]


def test_a_connect_timeout_names_a_paused_serverless_instance_among_the_causes():
    message = tool.no_answer("timeout expired", tool.Settings())
    assert "no answer within DB_CONNECT_TIMEOUT, 40 s" in message
    assert "Aurora Serverless v2 instance that auto-paused" in message
    assert tool.Settings().connect_timeout == 40


# --- 3. MariaDB password policies, expired and locked accounts -------------------------------


@contextlib.contextmanager
def root_settings(db, *statements_and_undo: tuple[str, str]):
    """Run each statement as the server's root, and its undo at the end, whatever happens."""
    done = []
    try:
        with db.root() as connection:
            for statement, undo in statements_and_undo:
                db.run_sql(connection, statement)
                done.append(undo)
        yield
    finally:
        with db.root() as connection:
            for undo in reversed(done):
                db.run_sql(connection, undo)


def test_a_password_validation_plugin_gets_plaintext_passwords_and_a_general_log_warning(maria):
    """simple_password_check (RDS for MariaDB 11.4+ offers it) with strict_password_validation
    (the default) refuses IDENTIFIED BY PASSWORD '<hash>': the passwords are sent as they are,
    satisfy the plugin's defaults, and where the general log is on the report says it holds
    them (as it does)."""
    log_file = maria.server.datadir / "general-topology.log"
    with root_settings(
        maria,
        ("INSTALL SONAME 'simple_password_check'", "UNINSTALL SONAME 'simple_password_check'"),
        (f"SET GLOBAL general_log_file = '{log_file}'", "SET GLOBAL general_log = OFF"),
        ("SET GLOBAL general_log = ON", "SET GLOBAL general_log = OFF"),
    ):
        created = maria.invoke(maria.seed_event())
        changed = maria.invoke(with_action(maria.seed_event(), "update"))
        logged = log_file.read_text(errors="replace")

    for report in (created, changed):
        assert report["status"] == "success"
        assert any(
            "general query log (general_log) record those statements with the passwords" in w
            for w in report["warnings"]
        )
    assert all(u["result"] == "updated" for u in changed["users"])
    for secret in SEED_SECRETS:
        with maria.login(secret) as connection:
            assert maria.run_sql(connection, "SELECT 1") == [(1,)]
        assert maria.secret(secret)["password"] in logged  # what the warning says
    assert "IDENTIFIED BY PASSWORD" not in logged


def test_without_a_validation_plugin_mariadb_gets_hashes_and_no_warning(maria):
    report = maria.invoke(maria.seed_event())
    assert report["warnings"] == []
    assert "IDENTIFIED BY PASSWORD '***'" in " ".join(
        maria.invoke({**with_action(maria.seed_event(), "update"), "dry_run": True})["sql"]
    )


def test_the_binary_log_that_records_plaintext_passwords_is_named_too():
    """MariaDB writes CREATE/ALTER USER ... IDENTIFIED BY '<password>' to its binary log as
    sent (checked with SHOW BINLOG EVENTS on 10.11); RDS turns it on with automated backups.
    The test server runs without one: the warning is checked on the state."""
    state = tool.MyState(True, True, True, True, {}, {}, hashes_refused=True, binary_log=True)
    (warning,) = tool.my_password_warnings(state)
    assert "binary log (log_bin" in warning and "general query log" not in warning
    state.general_log = True
    (warning,) = tool.my_password_warnings(state)
    assert "general query log (general_log) and its binary log" in warning
    state.hashes_refused = False  # hashes sent: nothing to say
    assert tool.my_password_warnings(state) == []


def test_a_password_policy_above_what_the_passwords_hold_is_refused():
    state = tool.MyState(True, True, True, True, {}, {})
    assert tool.my_password_check_problems(state) == []
    state.password_checks = {
        "simple_password_check_digits": "2",
        "simple_password_check_minimal_length": "12",
    }
    (problem,) = tool.my_password_check_problems(state)
    assert problem.startswith("simple_password_check_digits is 2 on this server")


def test_an_expired_mariadb_password_is_set_again_and_the_secret_kept(maria):
    maria.invoke(maria.seed_event())
    ro, rw = SEED["users"][2], SEED["users"][1]
    versions = {s: maria.versions(s) for s in SEED_SECRETS}
    last_week = int(time.time()) - 8 * 86400
    with root_settings(
        maria,
        (
            "SET GLOBAL disconnect_on_expired_password = ON",
            "SET GLOBAL disconnect_on_expired_password = OFF",
        ),
        ("SET GLOBAL default_password_lifetime = 7", "SET GLOBAL default_password_lifetime = 0"),
    ):
        with maria.root() as connection:
            maria.run_sql(connection, f"ALTER USER '{ro['db_user']}'@'%%' PASSWORD EXPIRE")
            # its password set 8 days ago: past the 7-day default lifetime
            maria.run_sql(
                connection,
                "UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, '$.password_last_changed', %s) "
                "WHERE User = %s",
                last_week,
                rw["db_user"],
            )
            maria.run_sql(connection, "FLUSH PRIVILEGES")
        with pytest.raises(tool.pymysql.err.OperationalError) as expired:
            maria.login(ro["user_secret_name"])
        assert expired.value.args[0] == 1862

        report = maria.invoke({**maria.seed_event(), "verify_logins": True})
        again = maria.invoke({**maria.seed_event(), "verify_logins": True})

    by_user = {u["db_user"]: u for u in report["users"]}
    for entry in (ro, rw):
        assert "password set: it had expired" in by_user[entry["db_user"]]["changes"]
    assert by_user[SEED["users"][0]["db_user"]]["result"] == "unchanged"
    assert any("default_password_lifetime is 7 days" in w for w in report["warnings"])
    assert again["changed"] is False
    assert {s: maria.versions(s) for s in SEED_SECRETS} == versions  # no secret changed
    for secret in SEED_SECRETS:
        with maria.login(secret) as connection:
            assert maria.run_sql(connection, "SELECT 1") == [(1,)]


def test_a_locked_mariadb_account_is_refused_by_name_and_may_be_deleted(maria):
    maria.invoke(maria.seed_event())
    ro = SEED["users"][2]
    with maria.root() as connection:
        maria.run_sql(connection, f"ALTER USER '{ro['db_user']}'@'%%' ACCOUNT LOCK")
    before = secrets_snapshot(maria.sm)

    for event in (maria.seed_event(verify_logins=True), with_action(maria.seed_event(), "update")):
        with pytest.raises(tool.InvalidEvent) as refused:
            maria.invoke(event)
        assert f"account '{ro['db_user']}'@'%' is locked (ACCOUNT LOCK)" in str(refused.value)
        assert "ACCOUNT UNLOCK" in str(refused.value)
    assert secrets_snapshot(maria.sm) == before

    report = maria.invoke(
        maria.event([user(ro["db_user"], ro["user_secret_name"], action="delete")])
    )
    assert report["users"][0]["result"] == "deleted"
    assert ro["db_user"] not in maria.user_names()


# --- 4. PostgreSQL 16+ createrole_self_grant -------------------------------------------------


def test_createrole_self_grant_leaves_the_masters_memberships_as_they_were(rds):
    """On 16+, createrole_self_grant = 'set, inherit' for the master would grant it every
    role it creates with INHERIT and SET; the run turns it off for its session and says so:
    the master holds only the ADMIN OPTION PostgreSQL 16 gives a role's creator, after a
    create, an update and a delete. Before 16 the setting does not exist: the same runs,
    nothing to say, no membership at all."""
    if rds.major >= 16:
        with rds.superuser() as connection:
            rds.run_sql(
                connection,
                f"ALTER ROLE \"{rds.master}\" SET createrole_self_grant = 'set, inherit'",
            )
    before = rds.master_memberships()

    reports = [
        rds.invoke(rds.seed_event()),
        rds.invoke(with_action(rds.seed_event(), "update")),
        rds.invoke(rds.seed_event(dry_run=True)),
    ]
    gained = rds.master_memberships() - before
    if rds.major >= 16:  # the creator's ADMIN OPTION, without INHERIT or SET
        assert gained == {(u["db_user"], True, False, False) for u in SEED["users"]}
    else:
        assert gained == set()
    warned = [
        any("createrole_self_grant is 'set, inherit'" in w for w in r["warnings"]) for r in reports
    ]
    assert warned == [rds.major >= 16] * 3
    rds.invoke(with_action(rds.seed_event(), "delete"))
    assert rds.master_memberships() == before
    with rds.as_master() as connection:  # the master's own setting is left as it was
        (setting,) = rds.run_sql(
            connection, "SELECT current_setting('createrole_self_grant', true)"
        )[0]
    assert setting == ("set, inherit" if rds.major >= 16 else None)


# --- 5. a changed kms_key_id ----------------------------------------------------------------


def test_a_changed_kms_key_is_applied_to_existing_secrets(rds, moto_url):
    kms = moto_client("kms", moto_url)
    first, second = (kms.create_key()["KeyMetadata"] for _ in range(2))
    kms.create_alias(AliasName="alias/app-secrets", TargetKeyId=second["KeyId"])
    rds.invoke(rds.seed_event(kms_key_id=first["KeyId"]))

    unchanged = rds.invoke(rds.seed_event(kms_key_id=first["Arn"]))  # the same key, by ARN
    dry = rds.invoke(rds.seed_event(kms_key_id=second["KeyId"], dry_run=True))
    moved = rds.invoke(rds.seed_event(kms_key_id=second["KeyId"]))
    again = rds.invoke(rds.seed_event(kms_key_id=second["KeyId"]))
    without_key = {k: v for k, v in rds.seed_event().items() if k != "kms_key_id"}
    kept = rds.invoke(without_key)  # no kms_key_id: each secret keeps its key

    assert unchanged["changed"] is False
    for report in (dry, moved):
        assert {u["secret"]["result"] for u in report["users"]} == {"updated"}
    assert moved["stats"]["aws_calls"]["UpdateSecret"] == 3
    assert again["changed"] is False and kept["changed"] is False
    for secret in SEED_SECRETS:
        assert rds.sm.describe_secret(SecretId=secret)["KmsKeyId"] == second["KeyId"]
        with rds.login(secret) as connection:
            assert rds.run_sql(connection, "SELECT 1") == [(1,)]


def test_kms_keys_are_compared_by_id_or_alias_whatever_the_form():
    secret = tool.SecretState("s", exists=True, kms_key_id="1234abcd-12ab-34cd-56ef-1234567890ab")
    arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

    def event(key):
        return SimpleNamespace(kms_key_id=key)

    assert tool.key_change(secret, event(arn)) is None
    assert tool.key_change(secret, event(None)) is None
    assert tool.key_change(secret, event("alias/other")) == "alias/other"
    aliased = tool.SecretState(
        "s", exists=True, kms_key_id="arn:aws:kms:us-east-1:111122223333:alias/app"
    )
    assert tool.key_change(aliased, event("alias/app")) is None
    assert tool.key_change(tool.SecretState("new"), event(arn)) is None  # created with it


# --- 6. engine versions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "refused"),
    [
        ("5.7.44-log", "MySQL 5.7.44-log is not supported"),
        (
            "5.7.12",
            "MySQL 5.7.12 is not supported: the tool manages MySQL 8.0 and later (5.7, as "
            "Aurora MySQL 2",
        ),
        ("5.6.51", "MySQL 5.6.51 is not supported"),
        ("10.3.39-MariaDB", "MariaDB 10.3.39-MariaDB is not supported"),
        ("8.0.36", None),
        ("8.0.mysql_aurora.3.05.2", None),
        ("8.4.3", None),
        ("10.4.34-MariaDB", None),
        ("10.11.6-MariaDB-log", None),
        ("5.5.5-10.11.6-MariaDB", None),
        ("11.4.5-MariaDB", None),
    ],
)
def test_mysql_and_mariadb_versions_the_tool_cannot_serve_are_refused_by_name(version, refused):
    problems = tool.my_version_problems(version)
    if refused is None:
        assert problems == []
    else:
        (problem,) = problems
        assert problem.startswith(refused) and "Nothing was changed" in problem


class ScriptedCursor:
    """A cursor that answers the first query with `row`, and fails on any other: the run
    must stop at the version, before the queries an old server cannot answer."""

    def __init__(self, row: tuple):
        self.row, self.executed = row, []

    def execute(self, statement, params=None):
        if self.executed:
            raise AssertionError(f"queried after the version: {statement}")
        self.executed.append(statement)

    def fetchone(self):
        return self.row


def test_a_mysql_57_server_is_refused_before_its_catalog_is_read():
    cursor = ScriptedCursor(("5.7.44-log", "STRICT_TRANS_TABLES", 1, 0))  # 0: no record table
    with pytest.raises(tool.InvalidEvent, match=r"MySQL 5\.7\.44-log is not supported"):
        tool.read_my_state(cursor, tool.parse_event(SEED))
    assert len(cursor.executed) == 1


@pytest.mark.parametrize(("major", "refused"), [(12, True), (13, True), (14, False), (19, False)])
def test_postgresql_below_14_is_refused_before_its_catalog_is_read(major, refused):
    cursor = ScriptedCursor(("master", major, False, False, ""))
    if refused:
        with pytest.raises(tool.InvalidEvent, match=f"PostgreSQL {major} is not supported"):
            tool.read_pg_state(cursor, tool.parse_event(SEED))
        assert len(cursor.executed) == 1
    else:
        assert tool.pg_version_problems(major) == []


# --- 7. proxies, notices, denials -------------------------------------------------------------


def test_runs_converge_where_batchgetsecretvalue_is_denied(rds, monkeypatch):
    created = tool.SecretsManager.__init__

    def with_batch_denied(self, *args, **keys):
        created(self, *args, **keys)

        def denied(**_):
            error = {"Error": {"Code": "AccessDeniedException", "Message": "denied by an SCP"}}
            raise tool.botocore.exceptions.ClientError(error, "BatchGetSecretValue")

        self.client.batch_get_secret_value = denied

    monkeypatch.setattr(tool.SecretsManager, "__init__", with_batch_denied)

    first = rds.invoke(rds.seed_event())
    again = rds.invoke(rds.seed_event())
    changed = rds.invoke(with_action(rds.seed_event(), "update"))

    assert first["status"] == again["status"] == changed["status"] == "success"
    assert again["changed"] is False
    assert "BatchGetSecretValue" not in again["stats"]["aws_calls"]
    assert {u["result"] for u in changed["users"]} == {"updated"}
    for secret in SEED_SECRETS:
        with rds.login(secret) as connection:
            assert rds.run_sql(connection, "SELECT 1") == [(1,)]


def test_server_warnings_during_a_run_reach_the_report(rds):
    """What RDS says during a PostgreSQL major-version Blue/Green deployment (DCL is not
    replicated to green) is played by an event trigger that warns on GRANT and REVOKE."""
    with rds.superuser(rds.database) as connection:
        rds.run_sql(
            connection,
            """CREATE FUNCTION warn_dcl() RETURNS event_trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE WARNING 'Blue/Green: % is not replicated to the green environment',
                                   tg_tag; END $$;
               CREATE EVENT TRIGGER warn_dcl ON ddl_command_end WHEN TAG IN ('GRANT', 'REVOKE')
               EXECUTE FUNCTION warn_dcl()""",
        )
    try:
        dry = rds.invoke(rds.seed_event(dry_run=True))
        done = rds.invoke(rds.seed_event())
        quiet = rds.invoke(rds.seed_event())  # nothing to grant: nothing said
    finally:
        with rds.superuser(rds.database) as connection:
            rds.run_sql(connection, "DROP EVENT TRIGGER warn_dcl")
    said = "server WARNING: Blue/Green: GRANT is not replicated to the green environment"
    assert said in dry["warnings"] and said in done["warnings"]
    assert len([w for w in done["warnings"] if w == said]) == 1  # each said once
    assert not [w for w in quiet["warnings"] if w.startswith("server ")]


def test_mariadb_warnings_during_a_run_reach_the_report(maria):
    """The test server resolves no host names (--skip-name-resolve): MariaDB warns that an
    account at a host name cannot log in."""
    report = maria.invoke(
        maria.event([user("far", host="app.example.com", grant_privileges="SELECT")])
    )
    assert any(
        w.startswith("server Warning 1285:") and "skip-name-resolve" in w
        for w in report["warnings"]
    ), report["warnings"]


def test_an_unsupported_server_is_reported_with_the_events_own_problems(rds, monkeypatch):
    """Played by raising the oldest supported major above the server's."""
    monkeypatch.setattr(tool, "PG_OLDEST", rds.major + 1)
    before = secrets_snapshot(rds.sm)

    with pytest.raises(tool.InvalidEvent) as refused:
        rds.invoke(rds.event([user("app", grant_privileges="SELECT,FROB")]))

    problems = refused.value.problems
    assert problems[0].startswith(f"PostgreSQL {rds.major} is not supported")
    assert any("FROB" in p for p in problems[1:]), problems
    assert secrets_snapshot(rds.sm) == before
