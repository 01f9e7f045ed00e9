"""Who owns an account, known for certain (docs/ownership.md): the server itself records which
secret manages each account the tool manages, and in which databases it is used, and the tool
decides from that record, never from ListSecrets (which AWS says may lag minutes behind) nor
from the host string an event reaches the server by.

Every scenario is written once and runs on PostgreSQL and on MariaDB (`db`), under the two weak
signals the record replaces:
- lag: a proxy in front of moto's server makes ListSecrets lag as AWS documents it may: from
  the start of the scenario it shows the secrets as they were then (the ones created since
  are left out, the others keep their tags and version stages of that moment); every other
  call passes through;
- alias: the second database's events reach the server as `localhost`, the first's as
  127.0.0.1: one server under two names.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.exceptions
import pytest
import requests
from conftest import SEED, open_session, tool, user

LIST_SECRETS = "secretsmanager.ListSecrets"
MOTO_HEADERS = {  # moto's server tells the service by the credential scope of the signature
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": LIST_SECRETS,
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/secretsmanager/"
    "aws4_request, SignedHeaders=host, Signature=0",
}


class ListLag:
    """A proxy in front of moto's server that makes ListSecrets lag; everything else passes
    through. `freeze()`: from now on ListSecrets shows the secrets as they were at this moment
    (tags and version stages included), and leaves out those created since."""

    def __init__(self, moto_url: str):
        self.moto_url = moto_url
        self.snapshot: dict[str, dict] | None = None
        self.lists = 0  # the ListSecrets calls it answered while frozen
        lag = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length")
                }
                answer = requests.post(
                    lag.moto_url + self.path, data=body, headers=headers, timeout=30
                )
                content = answer.content
                if self.headers.get("X-Amz-Target") == LIST_SECRETS and answer.ok:
                    content = lag.stale(content)
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stale(self, content: bytes) -> bytes:
        if self.snapshot is None:
            return content
        self.lists += 1
        answer = json.loads(content)
        listed = answer.get("SecretList", [])
        answer["SecretList"] = [
            self.snapshot[e["ARN"]] for e in listed if e["ARN"] in self.snapshot
        ]
        return json.dumps(answer).encode()

    def freeze(self) -> None:
        entries: dict[str, dict] = {}
        request: dict[str, Any] = {"MaxResults": 100}
        while True:
            page = requests.post(self.moto_url, json=request, headers=MOTO_HEADERS, timeout=30)
            page.raise_for_status()
            answer = page.json()
            entries.update((e["ARN"], e) for e in answer.get("SecretList", []))
            if not answer.get("NextToken"):
                break
            request["NextToken"] = answer["NextToken"]
        self.snapshot, self.lists = entries, 0

    def thaw(self) -> None:
        self.snapshot = None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def list_lag(moto_url):
    lag = ListLag(moto_url)
    yield lag
    lag.stop()


@pytest.fixture
def lagging(list_lag, secretsmanager, monkeypatch):
    """The tool talks to Secrets Manager through the proxy (the tests' own client does not)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", list_lag.url)
    list_lag.thaw()
    yield list_lag
    list_lag.thaw()


def test_the_proxy_hides_new_secrets_from_listsecrets_only(lagging, secretsmanager):
    secretsmanager.create_secret(Name="before", SecretString="{}")
    lagging.freeze()
    secretsmanager.create_secret(Name="after", SecretString="{}")
    secretsmanager.tag_resource(SecretId="before", Tags=[{"Key": "k", "Value": "v"}])
    through = tool.SecretsManager("us-east-1").client

    listed = through.list_secrets()["SecretList"]

    assert [e["Name"] for e in listed] == ["before"]
    assert "Tags" not in listed[0] or listed[0]["Tags"] == []  # as it was when frozen
    assert through.describe_secret(SecretId="after")["Name"] == "after"
    assert json.loads(through.get_secret_value(SecretId="after")["SecretString"]) == {}
    assert lagging.lists == 1


# ---------------------------------------------------------------------------------------------
# What each engine keeps and how a test looks at it (as the server's superuser).


def record_of(db, name: str) -> dict | None:
    """The record the server keeps for the account, as JSON (None: none)."""
    if db.ENGINE == "postgres":
        with db.superuser() as connection:
            rows = db.run_sql(
                connection,
                "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s",
                name,
            )
    else:
        with db.root() as connection:
            tables = db.run_sql(
                connection,
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                tool.MY_RECORD_DATABASE,
            )
            rows = tables and db.run_sql(
                connection,
                f"SELECT record FROM {tool.MY_RECORD_DATABASE}.accounts WHERE user = %s",
                name,
            )
    text = rows[0][0] if rows else None
    return json.loads(text) if text else None


def forget_record(db, name: str) -> None:
    """As for an account managed before the tool kept records."""
    with db.root() if db.ENGINE == "mariadb" else db.superuser() as connection:
        if db.ENGINE == "postgres":
            db.run_sql(connection, f'COMMENT ON ROLE "{name}" IS NULL')
        else:
            db.run_sql(
                connection, f"DELETE FROM {tool.MY_RECORD_DATABASE}.accounts WHERE user = %s", name
            )


def create_database(db, name: str, table: str = "t") -> None:
    """A database of the master's, with a table of the master's in it."""
    with db.as_master() as connection:
        quoted = f'"{name}"' if db.ENGINE == "postgres" else f"`{name}`"
        db.run_sql(connection, f"CREATE DATABASE {quoted}")
    with db.as_master(name) as connection:
        db.run_sql(connection, f"CREATE TABLE {table} (id int)")


def grant_by_hand(db, name: str, database: str) -> None:
    """What a person grants the account in another database, without the tool."""
    with db.as_master(database) as connection:
        if db.ENGINE == "postgres":
            db.run_sql(connection, f'GRANT CONNECT ON DATABASE "{database}" TO "{name}"')
            db.run_sql(connection, f'GRANT SELECT ON t TO "{name}"')
        else:
            db.run_sql(connection, f"GRANT SELECT ON `{database}`.* TO %s@'%%'", name)


def can_in(db, secret: str, database: str, statement: str) -> bool:
    """Whether the secret's account may run the statement in `database` (not the one the
    secret describes: a shared account), logged in with the secret's password."""
    value = db.secret(secret)
    try:
        connection = db.connect(value["username"], value["password"], database)
    except Exception as error:  # MariaDB refuses a login to a database the account has no grant on
        if getattr(error, "args", (None,))[0] == 1044:
            return False
        raise
    try:
        db.run_sql(connection, statement)
        return True
    except Exception as error:
        if db.denied(error):
            return False
        raise
    finally:
        connection.rollback()
        connection.close()


def secrets_as_they_are(db, *names: str) -> dict:
    """Value, versions and tags of each secret: what a refused event must leave as it was."""
    return {
        name: (db.secret(name), db.versions(name), db.sm.describe_secret(SecretId=name)["Tags"])
        for name in names
    }


def arn(db, name: str) -> str:
    return db.sm.describe_secret(SecretId=name)["ARN"]


def exists(db, name: str) -> bool:
    try:
        return "DeletedDate" not in db.sm.describe_secret(SecretId=name)
    except db.sm.exceptions.ResourceNotFoundException:
        return False


class Run:
    """A scenario's two databases under one of the weak signals: `lag` (ListSecrets frozen
    from the start) or `alias` (the second database's events reach the server as localhost)."""

    def __init__(self, db, how: str, lag: ListLag):
        self.db, self.how = db, how
        if how == "lag":
            lag.freeze()

    def first(self, users: list[dict], **extra: Any) -> dict:
        return self.db.event(users, **extra)

    def second(self, users: list[dict], **extra: Any) -> dict:
        host = "localhost" if self.how == "alias" else self.db.server.host
        return self.db.event(users, database_name="second", rds_host=host, **extra)


# ---------------------------------------------------------------------------------------------
# One role, declared by two databases' events.


def a_role_declared_with_two_secrets_is_refused(run: Run) -> None:
    db = run.db
    db.invoke(run.first([user("shared", "shared-a", grant_privileges="SELECT")]))
    create_database(db, "second")
    before = secrets_as_they_are(db, "shared-a")

    with pytest.raises(tool.InvalidEvent) as refused:
        db.invoke(run.second([user("shared", "shared-b", grant_privileges="SELECT")]))

    assert f"managed through secret {arn(db, 'shared-a')!r}" in str(refused.value)
    assert not exists(db, "shared-b")
    assert secrets_as_they_are(db, "shared-a") == before
    assert db.can("shared-a", "SELECT 1")
    assert not can_in(db, "shared-a", "second", "SELECT * FROM t")


def one_secret_serves_a_role_in_two_databases(run: Run) -> None:
    db = run.db
    create_database(db, "second")
    with db.as_master() as connection:
        db.run_sql(connection, "CREATE TABLE t (id int)")
    first = run.first([user("shared", "shared-a", grant_privileges="SELECT")])
    db.invoke(first)
    before = secrets_as_they_are(db, "shared-a")
    second = run.second([user("shared", "shared-a", grant_privileges="SELECT,INSERT")])

    report = db.invoke(second)

    (shared,) = report["users"]
    assert shared["result"] == "updated" and shared["secret"]["result"] == "unchanged"
    assert secrets_as_they_are(db, "shared-a") == before  # no new password, not repointed
    assert can_in(db, "shared-a", "second", "INSERT INTO t VALUES (1)")
    assert db.can("shared-a", "SELECT * FROM t")
    assert not db.can("shared-a", "INSERT INTO t VALUES (1)")  # each database its own grants
    assert record_of(db, "shared")["databases"] == ["airflow", "second"]
    assert db.invoke(second)["changed"] is False
    assert db.invoke(first)["changed"] is False


def a_delete_of_a_role_another_database_uses_is_refused(run: Run) -> None:
    db = run.db
    create_database(db, "second")
    db.invoke(run.first([user("shared", "shared-a", grant_privileges="SELECT")]))
    db.invoke(run.second([user("shared", "shared-a", grant_privileges="SELECT")]))
    before = secrets_as_they_are(db, "shared-a")

    for event, other in (
        (run.second([{"db_user": "shared", "action": "delete"}]), "'airflow'"),
        (run.first([user("shared", "shared-a", action="delete")]), "'second'"),
    ):
        with pytest.raises(tool.InvalidEvent) as refused:
            db.invoke(event)
        assert "'shared' cannot be deleted" in str(refused.value)
        assert other in str(refused.value)

    assert "shared" in db.user_names()
    assert secrets_as_they_are(db, "shared-a") == before
    assert db.can("shared-a", "SELECT 1")
    assert can_in(db, "shared-a", "second", "SELECT * FROM t")


def a_delete_of_a_role_with_privileges_in_another_database_is_refused(run: Run) -> None:
    """Granted there by hand, without the tool's record: DROP USER would still take them."""
    db = run.db
    create_database(db, "second")
    db.invoke(run.first([user("shared", "shared-a", grant_privileges="SELECT")]))
    grant_by_hand(db, "shared", "second")

    with pytest.raises(tool.InvalidEvent, match="'shared'.* cannot be deleted.*'second'"):
        db.invoke(run.first([user("shared", "shared-a", action="delete")]))

    assert "shared" in db.user_names() and exists(db, "shared-a")
    assert can_in(db, "shared-a", "second", "SELECT * FROM t")


def a_role_is_taken_out_of_one_database_then_deleted(run: Run) -> None:
    """The way out of a shared account: keep_account takes it out of one database (its
    privileges there revoked, the record no longer naming it); then the last database's
    delete drops it, and its secret."""
    db = run.db
    create_database(db, "second")
    db.invoke(run.first([user("shared", "shared-a", grant_privileges="SELECT")]))
    db.invoke(run.second([user("shared", "shared-a", grant_privileges="SELECT")]))
    out = run.second([{"db_user": "shared", "action": "delete", "keep_account": True}])

    report = db.invoke(out)

    (shared,) = report["users"]
    assert shared["result"] == "updated"
    assert "taken out of database second; the account stays" in shared["changes"]
    assert not can_in(db, "shared-a", "second", "SELECT * FROM t")
    assert db.can("shared-a", "SELECT 1")
    assert record_of(db, "shared")["databases"] == ["airflow"]
    assert db.invoke(out)["changed"] is False

    deleted = db.invoke(run.first([{"db_user": "shared", "action": "delete"}]))

    assert deleted["users"][0]["result"] == "deleted"
    assert "shared" not in db.user_names() and not exists(db, "shared-a")


def a_dropped_database_leaves_the_record(run: Run) -> None:
    db = run.db
    create_database(db, "second")
    first = run.first([user("shared", "shared-a", grant_privileges="SELECT")])
    db.invoke(first)
    db.invoke(run.second([user("shared", "shared-a", grant_privileges="SELECT")]))
    with db.as_master() as connection:
        db.run_sql(
            connection,
            'DROP DATABASE "second"' if db.ENGINE == "postgres" else "DROP DATABASE `second`",
        )

    db.invoke(first)

    assert record_of(db, "shared")["databases"] == ["airflow"]
    assert db.invoke(first)["changed"] is False


TWO_DATABASES = [
    a_dropped_database_leaves_the_record,
    a_role_is_taken_out_of_one_database_then_deleted,
    a_role_declared_with_two_secrets_is_refused,
    one_secret_serves_a_role_in_two_databases,
    a_delete_of_a_role_another_database_uses_is_refused,
    a_delete_of_a_role_with_privileges_in_another_database_is_refused,
]


@pytest.mark.parametrize("how", ["lag", "alias"])
@pytest.mark.parametrize("scenario", TWO_DATABASES, ids=lambda f: f.__name__)
def test_two_databases(db, lagging, scenario, how):
    scenario(Run(db, how, lagging))


# ---------------------------------------------------------------------------------------------
# Deletes, re-runs, moves: decided from the record, whatever ListSecrets says.


def a_delete_under_lag_deletes_the_secret(db, lag: ListLag) -> None:
    lag.freeze()
    db.invoke(db.event([user("gone", "gone-secret", grant_privileges="SELECT")]))

    report = db.invoke(db.event([{"db_user": "gone", "action": "delete"}]))

    (gone,) = report["users"]
    assert gone["result"] == "deleted" and gone["secret"]["result"] == "deleted"
    assert not exists(db, "gone-secret")
    assert "gone" not in db.user_names()


def a_delete_of_a_secret_without_its_tags_deletes_it(db, lag: ListLag) -> None:
    db.invoke(db.event([user("gone", "gone-secret", grant_privileges="SELECT")]))
    tags = [t["Key"] for t in db.sm.describe_secret(SecretId="gone-secret")["Tags"]]
    db.sm.untag_resource(SecretId="gone-secret", TagKeys=tags)

    report = db.invoke(db.event([{"db_user": "gone", "action": "delete"}]))

    assert report["users"][0]["secret"]["result"] == "deleted"
    assert not exists(db, "gone-secret")


def a_delete_that_cannot_know_the_secret_fails(db, lag: ListLag) -> None:
    """No record (an account managed before records), no tags: nothing says which secret
    is its; the delete fails, and nothing changes."""
    db.invoke(db.event([user("gone", "gone-secret", grant_privileges="SELECT")]))
    forget_record(db, "gone")
    tags = [t["Key"] for t in db.sm.describe_secret(SecretId="gone-secret")["Tags"]]
    db.sm.untag_resource(SecretId="gone-secret", TagKeys=tags)

    with pytest.raises(tool.InvalidEvent, match="no secret of the tool's is known for it"):
        db.invoke(db.event([{"db_user": "gone", "action": "delete"}]))

    assert "gone" in db.user_names()
    assert exists(db, "gone-secret") and db.can("gone-secret", "SELECT 1")


def a_delete_that_cannot_delete_the_secret_changes_nothing(db, lag: ListLag, monkeypatch) -> None:
    db.invoke(db.event([user("gone", "gone-secret", grant_privileges="SELECT")]))
    real = tool.SecretsManager.write

    def denied(manager, operation, **arguments):
        if operation == "delete_secret":
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "denied"}}, "DeleteSecret"
            )
        return real(manager, operation, **arguments)

    monkeypatch.setattr(tool.SecretsManager, "write", denied)
    with pytest.raises(tool.ApplyError, match="does not succeed without its secret"):
        db.invoke(db.event([{"db_user": "gone", "action": "delete"}]))
    monkeypatch.setattr(tool.SecretsManager, "write", real)

    assert exists(db, "gone-secret")
    if db.ENGINE == "postgres":  # one transaction: rolled back
        assert "gone" in db.user_names() and db.can("gone-secret", "SELECT 1")
    report = db.invoke(db.event([{"db_user": "gone", "action": "delete"}]))  # the record finds it
    assert report["users"][0]["secret"]["result"] == "deleted"
    assert not exists(db, "gone-secret") and "gone" not in db.user_names()


def an_update_killed_at_its_first_promotion_then_a_stale_create(db, lag: ListLag, monkeypatch):
    """The stale list shows the secrets without the AWSPENDING the update staged, and agrees
    with the batch read (AWSCURRENT did not move): only the record says a change is under
    way. Before records, this re-run reported `unchanged` with no AWSCURRENT logging in."""
    create = db.seed_event()
    db.invoke(create)
    lag.freeze()
    update = db.seed_event()
    for entry in update["users"]:
        entry["action"] = "update"

    class Killed(BaseException):
        pass

    def die(*_: Any) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(tool.SecretWriter, "promote", die)
        with pytest.raises(Killed):
            db.invoke(update)

    report = db.invoke(create)

    names = [u["user_secret_name"] for u in create["users"]]
    assert all(db.can(name, "SELECT 1") for name in names)
    assert any("finish an interrupted password change" in u["changes"] for u in report["users"])
    assert all(record_of(db, u["db_user"])["pending"] is None for u in create["users"])
    assert db.invoke(create)["changed"] is False
    assert lag.lists > 0  # the re-runs did read the stale list


def a_move_onto_an_account_with_another_password_is_refused(db, lag: ListLag) -> None:
    db.invoke(db.event([user("mover", "mover-secret", grant_privileges="SELECT")]))
    elsewhere = {
        **db.secret("mover-secret"),
        "host": "old-endpoint.example",
        "port": 1234,
        "password": "Another-password-1",
    }
    db.sm.put_secret_value(SecretId="mover-secret", SecretString=json.dumps(elsewhere))
    before = secrets_as_they_are(db, "mover-secret")

    with pytest.raises(tool.InvalidEvent, match="does not log in with the password of secret"):
        db.invoke(
            db.event([user("mover", "mover-secret", grant_privileges="SELECT")], move_secrets=True)
        )

    assert secrets_as_they_are(db, "mover-secret") == before


def a_move_of_another_secret_onto_a_recorded_account_is_refused(db, lag: ListLag) -> None:
    db.invoke(db.event([user("mover", "mover-secret", grant_privileges="SELECT")]))
    value = {**db.secret("mover-secret"), "host": "old-endpoint.example", "port": 1234}
    db.sm.create_secret(Name="other-secret", SecretString=json.dumps(value))

    with pytest.raises(tool.InvalidEvent, match="managed through secret"):
        db.invoke(
            db.event([user("mover", "other-secret", grant_privileges="SELECT")], move_secrets=True)
        )

    assert db.secret("other-secret") == value
    assert db.can("mover-secret", "SELECT 1")


def a_password_change_through_another_name_of_the_server(db, lag: ListLag) -> None:
    """localhost and 127.0.0.1 are proven one server (a session opened through one is seen
    through the other): the change is made, and the secret keeps the name it was made with."""
    db.invoke(db.event([user("named", "named-secret", grant_privileges="SELECT")]))

    report = db.invoke(
        db.event(
            [user("named", "named-secret", action="update", grant_privileges="SELECT")],
            rds_host="localhost",
        )
    )

    assert report["users"][0]["secret"]["result"] == "updated"
    assert db.secret("named-secret")["host"] == db.server.host
    assert db.can("named-secret", "SELECT 1")
    again = db.event(
        [user("named", "named-secret", grant_privileges="SELECT")], rds_host="localhost"
    )
    assert db.invoke(again)["changed"] is False


def an_account_managed_before_records_gets_its_record(db, lag: ListLag) -> None:
    event = db.event([user("old", "old-secret", grant_privileges="SELECT")])
    db.invoke(event)
    forget_record(db, "old")

    report = db.invoke(event)

    assert report["changed"] is True and report["users"][0]["result"] == "unchanged"
    assert record_of(db, "old") == {
        **({"managed-by": tool.TOOL} if db.ENGINE == "postgres" else {}),
        "secret": arn(db, "old-secret"),
        "databases": ["airflow"],
        "pending": None,
    }
    assert db.invoke(event)["changed"] is False


def an_account_whose_secret_does_not_log_in_is_not_recorded_for_it(db, lag: ListLag) -> None:
    """Managed before records, through another secret of the tool's (the old model made one a
    database): the secret that does not log in is not recorded; the one that does is named."""
    db.invoke(db.event([user("old", "old-secret", grant_privileges="SELECT")]))
    forget_record(db, "old")
    create_database(db, "second")
    stale = {**db.secret("old-secret"), "dbname": "second", "password": "Not-its-password-1"}
    db.sm.create_secret(Name="second-secret", SecretString=json.dumps(stale))

    event = db.event(
        [user("old", "second-secret", grant_privileges="SELECT")], database_name="second"
    )
    with pytest.raises(tool.InvalidEvent, match="old-secret"):
        db.invoke(event)

    assert db.can("old-secret", "SELECT 1")


def a_dry_run_shows_the_record_and_writes_nothing(db, lag: ListLag) -> None:
    report = db.invoke(
        db.event([user("new", "new-secret", grant_privileges="SELECT")], dry_run=True)
    )

    recording = "COMMENT ON ROLE" if db.ENGINE == "postgres" else "INSERT INTO `rds_initializer`"
    assert any(statement.startswith(recording) for statement in report["sql"]), report["sql"]
    assert "new" not in db.user_names() and not exists(db, "new-secret")
    assert record_of(db, "new") is None


ANY_DATABASE: list[Callable] = [
    a_dry_run_shows_the_record_and_writes_nothing,
    a_delete_under_lag_deletes_the_secret,
    a_delete_of_a_secret_without_its_tags_deletes_it,
    a_delete_that_cannot_know_the_secret_fails,
    an_update_killed_at_its_first_promotion_then_a_stale_create,
    a_move_onto_an_account_with_another_password_is_refused,
    a_move_of_another_secret_onto_a_recorded_account_is_refused,
    a_password_change_through_another_name_of_the_server,
    an_account_managed_before_records_gets_its_record,
    an_account_whose_secret_does_not_log_in_is_not_recorded_for_it,
]

WITH_MONKEYPATCH = {
    an_update_killed_at_its_first_promotion_then_a_stale_create,
    a_delete_that_cannot_delete_the_secret_changes_nothing,
}


def play(scenario: Callable, db, lag: ListLag, monkeypatch) -> None:
    if scenario in WITH_MONKEYPATCH:
        scenario(db, lag, monkeypatch)
    else:
        scenario(db, lag)


ANY_DATABASE.append(a_delete_that_cannot_delete_the_secret_changes_nothing)


@pytest.mark.parametrize("scenario", ANY_DATABASE, ids=lambda f: f.__name__)
def test_any_database(db, lagging, monkeypatch, scenario):
    play(scenario, db, lagging, monkeypatch)


# ---------------------------------------------------------------------------------------------
# Engine details.


def test_postgresql_keeps_a_comment_a_person_wrote_inside_the_record(rds):
    with rds.as_master() as connection:
        rds.run_sql(connection, "CREATE ROLE legacy LOGIN PASSWORD 'Old-password-1'")
        rds.run_sql(connection, "COMMENT ON ROLE legacy IS 'owned by the payments team'")

    rds.invoke(rds.event([user("legacy", "legacy-secret")]))

    record = record_of(rds, "legacy")
    assert record["comment"] == "owned by the payments team"
    assert record["secret"] == arn(rds, "legacy-secret")
    assert rds.can("legacy-secret", "SELECT 1")


@pytest.mark.parametrize("rds", ["foreign-role"], indirect=True)
def test_postgresql_records_a_role_the_master_did_not_create_once_it_may_manage_it(rds):
    """COMMENT ON ROLE needs what ALTER ROLE needs: CREATEROLE, and from 16 on ADMIN OPTION on
    the role, which the master holds on the roles it created only. The tool manages no role
    it may not alter (the refusal names a remedy), so it never meets one it cannot record."""
    ddl = "airflow-rw-ddl"
    secret = SEED["users"][0]["user_secret_name"]
    if rds.major >= 16:
        with pytest.raises(tool.InvalidEvent, match=f"needs ADMIN OPTION on '{ddl}'"):
            rds.invoke(rds.seed_event())
        assert record_of(rds, ddl) is None
        with open_session(**rds.server.dsn(user="old_admin", password="old-admin-pw")) as old:
            old.cursor().execute(
                f'GRANT "{ddl}" TO "{rds.master}" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE'
            )

    rds.invoke(rds.seed_event())

    assert record_of(rds, ddl)["secret"] == arn(rds, secret)
    assert rds.can(secret, "SELECT 1")


def no_accounts(*, mariadb: bool) -> Any:
    """A MySQL 8 or MariaDB server's state without an account of the event's."""
    return tool.MyState(
        mariadb=mariadb,
        database_exists=True,
        backslash_escapes=True,
        wildcards=True,
        accounts={},
        grants={},
    )


def test_the_mysql_8_record_is_an_account_attribute():
    state = no_accounts(mariadb=False)
    spec = tool.UserSpec(name="app's", secret_name="s")
    record = tool.Record("arn:aws:secretsmanager:us-east-1:1:secret:s-AbCdEf", ("db1", "db2"), None)

    (step,) = tool.my_record_steps([(spec, record)], state)

    # PyMySQL's escape_string escapes double quotes too; the server reads \" as "
    assert step.statement == (
        r"ALTER USER 'app\'s'@'%' ATTRIBUTE '{\"rds-initializer\": {\"secret\": "
        r"\"arn:aws:secretsmanager:us-east-1:1:secret:s-AbCdEf\", \"databases\": [\"db1\", "
        r"\"db2\"], \"pending\": null}}'"
    )
    # An existing account's record goes before its password changes; a new one's after it.
    existing = dataclasses.replace(state, accounts={("app's", "%"): tool.MyAccount("app's", "%")})
    create = tool.Step("CREATE USER ...", "create user", ("new",))
    new = tool.my_record_steps([(tool.UserSpec(name="new", secret_name="s"), record)], state)
    assert tool.MYSQL.with_records([create], [step, *new], existing) == [step, create, *new]
    # mysql.user keeps it under User_attributes' metadata, which the state query reads back:
    assert "JSON_EXTRACT(User_attributes, '$.metadata.\"rds-initializer\"')" in tool.MYSQL_RECORD
    attribute = json.loads(step.statement.split(" ATTRIBUTE ")[1][1:-1].replace('\\"', '"'))
    assert tool.parse_record(attribute[tool.MY_RECORD_ATTRIBUTE]) == record
    assert tool.my_record_steps([], state) == []


def test_mariadb_makes_its_table_of_records_first_and_writes_each_record_before_its_account():
    state = no_accounts(mariadb=True)
    spec = tool.UserSpec(name="app", secret_name="s")
    record = tool.Record("arn:aws:secretsmanager:us-east-1:1:secret:s-AbCdEf", ("db1",), "v1")

    steps = tool.my_record_steps([(spec, record)], state)

    assert [s.statement for s in steps[:2]] == list(tool.MARIADB_RECORD_SETUP)
    assert steps[2].statement.startswith("INSERT INTO `rds_initializer`.`accounts`")
    assert steps[2].summary == "record the password change under way"
    planned = [tool.Step("CREATE USER ...", "create user", ("app",))]
    assert tool.MARIADB.with_records(planned, steps, state) == steps + planned


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "not json",
        "[]",
        '{"secret": "not an arn", "databases": []}',
        '{"secret": "arn:x", "databases": "db"}',
        '{"secret": "arn:x", "databases": [], "pending": 1}',
    ],
)
def test_what_is_not_a_record_of_the_tools_is_no_record(value):
    assert tool.parse_record(value) is None
    assert tool.pg_record(value)[0] is None
