"""Nothing waits forever (issue 8 item 5, issue 13 items 1 and 2): an endpoint that accepts and
never answers fails the run within DB_CONNECT_TIMEOUT, naming the host, on both engine families;
MariaDB statements behind a global read lock end after DB_LOCK_TIMEOUT; the PostgreSQL cluster
lock survives the master role's idle_session_timeout, and a run whose lock session was ended
fails before committing, changing nothing, and a re-run converges."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT, SEED, tool
from endpoints import SilentEndpoint

DDL, DML, RO = (u["user_secret_name"] for u in SEED["users"])
SEED_USERS = {"airflow-rw-ddl", "airflow-rw-dml", "airflow-ro-dml"}


@pytest.fixture
def silent_endpoint():
    endpoints: list[SilentEndpoint] = []

    def start(greeting: bytes = b"") -> SilentEndpoint:
        endpoints.append(SilentEndpoint(greeting))
        return endpoints[-1]

    yield start
    for endpoint in endpoints:
        endpoint.close()


def run_cli(event: dict, tmp_path, **environment: str) -> tuple[int, str, float]:
    """The command line on the event, as an operator runs it: exit status, standard error,
    seconds taken (Python's start included)."""
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "lambda_function.py"), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **environment},
    )
    return done.returncode, done.stderr, time.monotonic() - started


# A MySQL greeting cut short: the packet header announces 78 bytes, 10 of them follow.
HALF_MYSQL_GREETING = bytes([78, 0, 0, 0]) + b"\x0a10.11.6-M"
# PostgreSQL's answer to the startup packet cut short: an AuthenticationRequest's first bytes.
HALF_PG_ANSWER = b"R\x00\x00"


@pytest.mark.parametrize(
    ("engine", "greeting"),
    [
        ("postgres", b""),
        ("postgres", HALF_PG_ANSWER),
        ("mariadb", b""),
        ("mariadb", HALF_MYSQL_GREETING),
        ("mysql", b""),
    ],
    ids=["postgres-silent", "postgres-half-answer", "mariadb-silent", "mariadb-half", "mysql"],
)
def test_an_endpoint_that_never_answers_fails_the_run_within_the_connect_timeout(
    secretsmanager, silent_endpoint, tmp_path, engine, greeting
):
    endpoint = silent_endpoint(greeting)
    master = {"engine": engine, "host": "127.0.0.1", "port": endpoint.port}
    secretsmanager.create_secret(
        Name="master", SecretString=json.dumps({**master, "username": "m", "password": "p"})
    )
    event = {
        **SEED,
        "secret_name": "master",
        "rds_host": "127.0.0.1",
        "rds_port": endpoint.port,
        "db_engine": engine,
        "ssl_mode": "disable",
    }

    status, stderr, seconds = run_cli(event, tmp_path, DB_CONNECT_TIMEOUT="5")

    assert status == 1, stderr
    assert f"cannot connect to 127.0.0.1:{endpoint.port}/{SEED['database_name']} as 'm'" in stderr
    assert (
        ": timed out (no answer within DB_CONNECT_TIMEOUT, 5 s: check the host and the port, "
        "that the function runs in the database's VPC, and that the database's security group "
        "lets this function in; an Aurora Serverless v2 instance that auto-paused answers only "
        "once it has resumed"
    ) in stderr
    assert "refused" not in stderr and "unreachable" not in stderr
    assert endpoint.accepted  # it did get through to the listener, which then kept silent
    assert 4.5 <= seconds < 5 + 10, seconds  # the timeout, plus Python's start on a busy machine
    assert secretsmanager.list_secrets()["SecretList"][0]["Name"] == "master"
    assert len(secretsmanager.list_secrets()["SecretList"]) == 1  # nothing was written


def test_a_mariadb_statement_behind_a_global_read_lock_ends_after_the_lock_timeout(
    maria, monkeypatch
):
    """FLUSH TABLES WITH READ LOCK (what backup tools take) makes every write wait: the first
    one, the tool's table of records on a server it never ran on (which lock_wait_timeout
    ends), or CREATE USER (which lock_wait_timeout does not end; max_statement_time does)."""
    monkeypatch.setenv("DB_LOCK_TIMEOUT", "2")
    backup = maria.root()
    maria.run_sql(backup, "FLUSH TABLES WITH READ LOCK")
    try:
        started = time.monotonic()
        with pytest.raises(tool.ApplyError) as failure:
            maria.invoke(maria.seed_event())
        seconds = time.monotonic() - started
    finally:
        maria.run_sql(backup, "UNLOCK TABLES")
        backup.close()

    message = str(failure.value)
    assert "step 1 of" in message, message
    assert "max_statement_time" in message or "Lock wait timeout exceeded" in message, message
    assert "a re-run converges" in message
    assert seconds < 2 + 5, seconds
    assert maria.accounts() == set()  # the statement was interrupted, not left to finish later

    report = maria.invoke(maria.seed_event())
    assert [u["result"] for u in report["users"]] == ["created"] * 3
    assert maria.invoke(maria.seed_event())["changed"] is False
    assert all(maria.can(name, "SELECT 1") for name in (DDL, DML, RO))


def test_mariadb_sessions_of_the_run_are_bounded_and_kept(maria, monkeypatch):
    """What the run's own sessions look like from the server, while it reads the state: each
    statement bounded by DB_LOCK_TIMEOUT, the session kept alive longer than any Lambda."""
    monkeypatch.setenv("DB_LOCK_TIMEOUT", "3")
    seen = {}
    original = tool.read_my_state

    def read_and_look(cursor, event):
        cursor.execute("SELECT @@SESSION.max_statement_time, @@SESSION.wait_timeout")
        seen["session"] = cursor.fetchone()
        return original(cursor, event)

    monkeypatch.setattr(tool, "read_my_state", read_and_look)
    maria.invoke(maria.seed_event())

    max_statement_time, wait_timeout = seen["session"]
    assert float(max_statement_time) == 3.0
    assert int(wait_timeout) >= tool.TIMEOUT_MAX_S


# The PostgreSQL cluster lock ----------------------------------------------------------------


def lock_sessions(rds) -> list[tuple]:
    """The sessions that hold the tool's advisory lock: (pid, application_name)."""
    with rds.superuser("postgres") as connection:
        return rds.run_sql(
            connection,
            """SELECT a.pid, a.application_name FROM pg_locks l
               JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE l.locktype = 'advisory' AND l.granted
                 AND l.classid = %s::oid AND l.objid = %s::oid AND l.objsubid = 1""",
            tool.LOCK_KEY >> 32,
            tool.LOCK_KEY & 0xFFFFFFFF,
        )


def slow_secret_reads(monkeypatch, seconds: float, then=None) -> list:
    """Make the run pause (as a slow Secrets Manager would) once it holds the lock and has
    read the database; `then` runs during the pause. Returns what `then` returned."""
    original = tool.SecretsManager.read_states
    results = []

    def read_states(self, names, *more, **keywords):
        time.sleep(seconds)
        if then:
            results.append(then())
        return original(self, names, *more, **keywords)

    monkeypatch.setattr(tool.SecretsManager, "read_states", read_states)
    return results


def test_the_cluster_lock_outlives_the_master_roles_idle_session_timeout(rds, monkeypatch):
    """Both sessions of the run sit idle while Secrets Manager answers: the lock session
    outside a transaction, the run's session inside one."""
    with rds.superuser() as connection:
        for setting in ("idle_session_timeout", "idle_in_transaction_session_timeout"):
            rds.run_sql(connection, f'ALTER ROLE "{rds.master}" SET {setting} = 1000')
    holders = slow_secret_reads(monkeypatch, 2.5, then=lambda: lock_sessions(rds))

    report = rds.invoke(rds.seed_event())

    assert report["status"] == "success"
    assert [name for _, name in holders[0]] == ["rds-initializer"]  # held after 2.5 s idle
    assert SEED_USERS <= rds.roles()
    monkeypatch.undo()
    assert rds.invoke(rds.seed_event())["changed"] is False


def test_a_run_whose_lock_session_was_ended_fails_before_committing_and_changes_nothing(
    rds, monkeypatch
):
    def end_the_lock_session():
        [(pid, _)] = lock_sessions(rds)
        with rds.superuser("postgres") as connection:
            rds.run_sql(connection, "SELECT pg_terminate_backend(%s, 5000)", pid)

    original = tool.Postgres.execute

    def execute_after_losing_the_lock(self, connection, steps):
        end_the_lock_session()
        return original(self, connection, steps)

    monkeypatch.setattr(tool.Postgres, "execute", execute_after_losing_the_lock)
    with pytest.raises(tool.ApplyError) as failure:
        rds.invoke(rds.seed_event())
    monkeypatch.undo()

    message = str(failure.value)
    assert "lost the cluster lock" in message and "before committing" in message, message
    assert "rolled back: nothing changed in the database" in message
    assert not SEED_USERS & rds.roles()
    assert lock_sessions(rds) == []  # and the run closed its sessions

    report = rds.invoke(rds.seed_event())
    assert [u["result"] for u in report["users"]] == ["created"] * 3
    assert rds.invoke(rds.seed_event())["changed"] is False
    assert all(rds.can(name, "SELECT 1") for name in (DDL, DML, RO))
