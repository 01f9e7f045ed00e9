"""Kill points on MariaDB, as tests/test_apply.py has them on PostgreSQL, but at EVERY point:
before each Secrets Manager write and each SQL statement that changes something (SELECT
and SHOW only read; GET_LOCK, a SELECT, is left out too) the run is
killed in turn (a BaseException, as abrupt as a dying Lambda); the next run must converge,
every secret must log in, and the run after it must change nothing.

Each kill point gets its own users (names carry the point's number), so no cleanup is needed
between points."""

from __future__ import annotations

import threading

import pymysql
import pytest
from conftest import tool, user


class Killed(BaseException):
    pass


class KillAt:
    """Counts Secrets Manager writes and SQL statements; kills the run at number `at`."""

    def __init__(self, monkeypatch, at: int | None):
        self.at, self.count, self.lock = at, 0, threading.Lock()
        write, execute = tool.SecretsManager.write, pymysql.cursors.Cursor.execute

        def counted_write(manager, operation, **arguments):
            self.tick(f"aws {operation}")
            return write(manager, operation, **arguments)

        def counted_execute(cursor, query, args=None):
            if not str(query).lstrip().upper().startswith(("SELECT", "SHOW")):
                self.tick("sql")  # reads change nothing: killing before them proves nothing
            return execute(cursor, query, args)

        monkeypatch.setattr(tool.SecretsManager, "write", counted_write)
        monkeypatch.setattr(pymysql.cursors.Cursor, "execute", counted_execute)

    def tick(self, what: str) -> None:
        with self.lock:
            self.count += 1
            if self.count == self.at:
                raise Killed(what)


def users_of(k: int, action: str = "create") -> list[dict]:
    """Three users: an owner and two grantees, with the seed's privileges (and their secrets,
    a delete included)."""
    ddl, dml, ro = f"k{k}-ddl", f"k{k}-dml", f"k{k}-ro"
    keys = {} if action == "create" else {"action": action}
    return [
        user(ddl, f"secret-{ddl}", grant_ddl=True, grant_privileges="SELECT,INSERT", **keys),
        user(dml, f"secret-{dml}", grant_privileges="SELECT,INSERT", grantor=ddl, **keys),
        user(ro, f"secret-{ro}", grant_privileges="SELECT", grantor=ddl, **keys),
    ]


def points(maria, monkeypatch, event: dict) -> int:
    """How many kill points a run of the event passes (run once, on names of its own)."""
    with monkeypatch.context() as patch:
        counter = KillAt(patch, None)
        maria.invoke(event)
    return counter.count


def killed_at(maria, monkeypatch, event: dict, at: int) -> None:
    with monkeypatch.context() as patch:
        KillAt(patch, at)
        with pytest.raises(Killed):
            maria.invoke(event)


def converges(maria, event: dict, staying: list[str]) -> None:
    maria.invoke(event)
    for name in staying:
        maria.login(f"secret-{name}").close()
    assert maria.invoke(event)["changed"] is False


def forget_the_tools_table(maria) -> None:
    """As on a server the tool never ran on: the first run makes its table of records, and
    is killed at every point of that too."""
    with maria.root() as connection:
        maria.run_sql(connection, f"DROP DATABASE IF EXISTS {tool.MY_RECORD_DATABASE}")


def test_creating_users_killed_at_every_point_converges(maria, monkeypatch):
    total = points(maria, monkeypatch, maria.event(users_of(0)))
    assert total > 5
    for k in range(1, total + 1):
        event = maria.event(users_of(k))
        forget_the_tools_table(maria)
        killed_at(maria, monkeypatch, event, k)
        converges(maria, event, [u["db_user"] for u in users_of(k)])


def test_changing_passwords_killed_at_every_point_converges(maria, monkeypatch):
    maria.invoke(maria.event(users_of(0)))
    total = points(maria, monkeypatch, maria.event(users_of(0, "update")))
    for k in range(1, total + 1):
        created = maria.event(users_of(k))
        maria.invoke(created)
        killed_at(maria, monkeypatch, maria.event(users_of(k, "update")), k)
        converges(maria, created, [u["db_user"] for u in users_of(k)])


def test_deleting_users_killed_at_every_point_converges(maria, monkeypatch):
    maria.invoke(maria.event(users_of(0)))
    total = points(maria, monkeypatch, maria.event(users_of(0, "delete")))
    for k in range(1, total + 1):
        maria.invoke(maria.event(users_of(k)))
        delete = maria.event(users_of(k, "delete"))
        killed_at(maria, monkeypatch, delete, k)
        converges(maria, delete, [])
        assert not {name for name, _ in maria.accounts()} & {u["db_user"] for u in users_of(k)}
        for entry in users_of(k):
            assert "DeletedDate" in maria.sm.describe_secret(SecretId=entry["user_secret_name"])
