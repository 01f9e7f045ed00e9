"""The connection dropped at every statement of a run (pg_terminate_backend / KILL CONNECTION
from a superuser's connection, triggered from inside the tool just before the statement is
sent, the commit included): each ends in a clean failure (ApplyError, exit status 1) naming
the step and saying that a re-run converges; the re-run converges and every secret logs in."""

from __future__ import annotations

import json
import re

import pytest
from conftest import tool, user


class Dropping:
    """A connection whose `at`-th statement (or commit) is preceded by `drop()`."""

    def __init__(self, connection, at: int | None, drop):
        self.connection, self.at, self.drop, self.count = connection, at, drop, 0

    def __getattr__(self, name):
        return getattr(self.connection, name)

    def tick(self) -> None:
        self.count += 1
        if self.count == self.at:
            self.drop(self.connection)

    def cursor(self):
        return DroppingCursor(self, self.connection.cursor())

    def commit(self):
        self.tick()
        return self.connection.commit()


class DroppingCursor:
    def __init__(self, owner: Dropping, cursor):
        self.owner, self.cursor = owner, cursor

    def __getattr__(self, name):
        return getattr(self.cursor, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.cursor.__exit__(*exc)

    def execute(self, statement, *args):
        self.owner.tick()
        return self.cursor.execute(statement, *args)


def patch_apply(monkeypatch, dialect: type, at: int | None, drop) -> list[Dropping]:
    """Run the dialect's apply on a Dropping connection; returns it once used."""
    used: list[Dropping] = []
    apply = dialect.apply

    def dropping_apply(self, connection, target, steps):
        used.append(Dropping(connection, at, drop))
        return apply(self, used[-1], target, steps)

    monkeypatch.setattr(dialect, "apply", dropping_apply)
    return used


def users_of(k: int, action: str = "create") -> list[dict]:
    ddl, dml, ro = f"d{k}-ddl", f"d{k}-dml", f"d{k}-ro"
    keys = {} if action == "create" else {"action": action}
    return [
        user(ddl, grant_ddl=True, grant_privileges="SELECT,INSERT", **keys),
        user(dml, grant_privileges="SELECT,INSERT", grantor=ddl, **keys),
        user(ro, grant_privileges="SELECT", grantor=ddl, **keys),
    ]


def statements(db, monkeypatch, dialect: type, event: dict) -> int:
    with monkeypatch.context() as patch:
        used = patch_apply(patch, dialect, None, lambda _connection: None)
        db.invoke(event)
    return used[0].count


def dropped_at(db, monkeypatch, dialect: type, event: dict, at: int, drop) -> str:
    with monkeypatch.context() as patch:
        patch_apply(patch, dialect, at, drop)
        with pytest.raises(tool.ApplyError) as caught:
            db.invoke(event)
    return str(caught.value)


def converges(db, event: dict, k: int) -> None:
    db.invoke(event)
    for entry in users_of(k):
        db.login(entry["user_secret_name"]).close()
    assert db.invoke(event)["changed"] is False


def pg_drop(rds):
    def drop(connection) -> None:
        with rds.superuser() as admin:
            [(done,)] = rds.run_sql(
                admin,
                "SELECT pg_terminate_backend(%s, 10000)",  # waits until the session is gone
                connection.get_backend_pid(),
            )
            assert done

    return drop


def maria_drop(maria):
    def drop(connection) -> None:
        with maria.root() as admin:
            maria.run_sql(admin, "KILL CONNECTION %s", connection.thread_id())

    return drop


@pytest.mark.parametrize("action", ["create", "update"])
def test_postgres_connection_dropped_at_every_statement(rds, monkeypatch, action):
    with rds.as_master() as connection:
        rds.run_sql(connection, "CREATE TABLE t (id serial)")
    rds.invoke(rds.event(users_of(0)))
    counted = 0 if action == "update" else 1000  # a create counts on users of its own
    total = statements(rds, monkeypatch, tool.Postgres, rds.event(users_of(counted, action)))
    assert total >= 4  # update: 3 passwords and the commit
    for k in range(1, total + 1):
        if action == "update":
            rds.invoke(rds.event(users_of(k)))
        message = dropped_at(
            rds, monkeypatch, tool.Postgres, rds.event(users_of(k, action)), k, pg_drop(rds)
        )
        if k < total:  # a statement (SET ROLE ones too): which step, and that nothing was kept
            assert re.match(r"step \d+ of \d+ \(", message) or "role switch" in message, message
        assert "rolled back" in message and "re-run converges" in message, message
        assert "connection already closed" not in message
        converges(rds, rds.event(users_of(k)), k)


@pytest.mark.parametrize("action", ["create", "update"])
def test_mariadb_connection_dropped_at_every_statement(maria, monkeypatch, action):
    maria.invoke(maria.event(users_of(0)))
    counted = 0 if action == "update" else 1000
    total = statements(maria, monkeypatch, tool.MySql, maria.event(users_of(counted, action)))
    assert total >= 3  # update: 3 passwords
    for k in range(1, total + 1):
        if action == "update":
            maria.invoke(maria.event(users_of(k)))
        message = dropped_at(
            maria, monkeypatch, tool.MySql, maria.event(users_of(k, action)), k, maria_drop(maria)
        )
        assert f"step {k} of {total}" in message, message
        assert ("Nothing was applied before it" if k == 1 else "Applied before it") in message
        assert "re-run converges" in message
        converges(maria, maria.event(users_of(k)), k)


def test_the_cli_reports_a_dropped_connection_as_exit_1_without_a_traceback(
    rds, monkeypatch, tmp_path, capsys
):
    monkeypatch.setattr(tool.LineHandler, "to_stderr", False)  # main() sets it: undone after
    path = tmp_path / "event.json"
    path.write_text(json.dumps(rds.event(users_of(1))))
    with monkeypatch.context() as patch:
        patch_apply(patch, tool.Postgres, 2, pg_drop(rds))
        assert tool.main([str(path)]) == 1
    err = capsys.readouterr().err
    assert "\nfailed: step 2 of " in err and "Traceback" not in err
    assert tool.main([str(path)]) == 0
