"""Names the servers would store differently or refuse are canonicalised or refused before
anything is written; so are roles the master cannot alter, and an expired VALID UNTIL is
repaired so that a re-run converges."""

from __future__ import annotations

import psycopg2
import pytest
from conftest import tool, user
from lambda_function import InvalidEvent, parse_event
from psycopg2 import sql


def event_of(*users: dict, engine: str = "mariadb") -> dict:
    return {"secret_name": "m", "database_name": "app", "db_engine": engine, "users": list(users)}


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    return caught.value.problems


# --- MySQL and MariaDB hosts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("App-Server.Example.COM", "app-server.example.com"),
        ("10.20.%", "10.20.%"),
        ("192.168.0.0/255.255.255.0", "192.168.0.0/255.255.255.0"),
        ("db_host-%.internal", "db_host-%.internal"),
        ("2001:DB8::1", "2001:db8::1"),
        ("h" * 255, "h" * 255),
    ],
)
def test_a_host_is_taken_as_the_server_stores_it(given, stored):
    for engine in ("mariadb", "mysql"):
        event = parse_event(event_of(user("app", host=given), engine=engine))
        assert event.users[0].host == stored
        assert tool.my_user_account(event.users[0]) == ("app", stored)


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("app@10.0.0.1", "may not contain @"),
        ("h" * 256, "at most 255"),
        ("bücher.example", "printable ASCII"),
        ("tab\x07bell", "printable ASCII"),
        ("a b", "blanks"),
        ("", "non-empty"),
    ],
)
def test_a_host_the_server_would_refuse_or_change_is_refused(host, why):
    [problem] = problems_of(event_of(user("app", host=host)))
    assert problem.startswith("user 'app': host") and why in problem


# --- names the account tables cannot store -------------------------------------------------


@pytest.mark.parametrize("engine", ["mariadb", "mysql"])
def test_a_name_outside_the_basic_multilingual_plane_is_refused_on_mysql(engine):
    problems = problems_of(
        event_of(
            user("emoji\U0001f600", "secret-1"), user("ok", grantor="g\U00010348"), engine=engine
        )
    )
    assert len(problems) == 2
    assert all("outside the Basic Multilingual Plane" in p for p in problems)
    assert (
        parse_event(event_of(user("Grüße-ñ-日本", "s"), engine=engine)).users[0].name
        == "Grüße-ñ-日本"
    )


def test_postgres_takes_a_name_outside_the_basic_multilingual_plane():
    assert parse_event(event_of(user("emoji\U0001f600", "s"), engine="postgres")).users


# --- PostgreSQL's reserved role names ------------------------------------------------------

SERVER_REFUSES = ["none", "public", "pg_mine"]
KEYWORDS = ["current_user", "current_role", "session_user", "system_user", "user"]


@pytest.mark.parametrize("name", SERVER_REFUSES + KEYWORDS + ["NONE", "Current_User"])
def test_reserved_role_names_are_refused_as_user_grantor_and_reassign_target(name):
    problems = problems_of(
        event_of(
            user(name),
            user("reader", grantor=name),
            user("gone", action="delete", reassign_to=name),
            engine="postgres",
        )
    )
    # as grantor or reassign_to, "none" in any case means no role (none-ish)
    assert len(problems) == (1 if name.lower() == "none" else 3)
    assert all("reserved" in p for p in problems)


@pytest.mark.parametrize("name", SERVER_REFUSES)
def test_names_create_role_refuses_are_refused_up_front_and_nothing_changes(rds, name):
    with rds.superuser() as connection, pytest.raises(psycopg2.Error, match="reserved"):
        rds.run_sql(connection, sql.SQL("CREATE ROLE {}").format(sql.Identifier(name)))
    roles_before = rds.roles()
    with pytest.raises(tool.InvalidEvent, match="reserved"):
        rds.invoke(rds.event([user("innocent"), user(name)]))
    assert rds.roles() == roles_before
    assert len(rds.sm.list_secrets()["SecretList"]) == 1  # the master's only


@pytest.mark.parametrize("name", KEYWORDS)
def test_role_keywords_the_server_takes_quoted_are_refused_up_front_too(rds, name):
    """Quoted, CREATE ROLE takes these (checked here); unquoted they name another role, so
    the tool refuses them all the same, before anything is written."""
    with rds.superuser() as connection:
        rds.run_sql(connection, sql.SQL("CREATE ROLE {}").format(sql.Identifier(name)))
        rds.run_sql(connection, sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    roles_before = rds.roles()
    with pytest.raises(tool.InvalidEvent, match="reserved"):
        rds.invoke(rds.event([user("innocent"), user(name)]))
    assert rds.roles() == roles_before
    assert len(rds.sm.list_secrets()["SecretList"]) == 1


# --- roles the master cannot alter, and expired passwords ----------------------------------


@pytest.mark.parametrize("attribute", ["REPLICATION", "BYPASSRLS"])
def test_an_existing_role_with_replication_or_bypassrls_is_refused_up_front(rds, attribute):
    with rds.superuser() as connection:
        rds.run_sql(connection, f"CREATE ROLE special LOGIN {attribute}")
    with pytest.raises(tool.InvalidEvent, match=f"has {attribute}"):
        rds.invoke(rds.event([user("innocent"), user("special", action="update")]))
    assert "innocent" not in rds.roles()
    assert len(rds.sm.list_secrets()["SecretList"]) == 1


def expire(rds, name: str) -> None:
    with rds.superuser() as connection:
        rds.run_sql(
            connection,
            sql.SQL("ALTER ROLE {} VALID UNTIL '2001-01-01'").format(sql.Identifier(name)),
        )


@pytest.mark.parametrize("verify_logins", [False, True])
def test_an_expired_valid_until_is_repaired_once_and_the_rerun_converges(rds, verify_logins):
    event = rds.event([user("app", grant_privileges="SELECT")], verify_logins=verify_logins)
    rds.invoke(event)
    expire(rds, "app")
    with pytest.raises(psycopg2.OperationalError):
        rds.login("secret-app")

    first = rds.invoke(event)

    assert first["changed"] is True
    assert "password no longer expired" in first["users"][0]["changes"]
    rds.login("secret-app").close()
    with rds.superuser() as connection:
        [(until,)] = rds.run_sql(
            connection, "SELECT rolvaliduntil::text FROM pg_roles WHERE rolname = 'app'"
        )
    assert until == "infinity"
    versions = rds.versions("secret-app")
    assert rds.invoke(event)["changed"] is False
    assert rds.versions("secret-app") == versions


def test_a_valid_until_still_to_come_is_left_as_it_is(rds):
    event = rds.event([user("app")])
    rds.invoke(event)
    with rds.superuser() as connection:
        rds.run_sql(connection, "ALTER ROLE app VALID UNTIL '2999-01-01'")
    assert rds.invoke(event)["changed"] is False


# --- the same on a real MariaDB ------------------------------------------------------------


def test_a_host_with_capitals_is_created_lower_case_and_the_rerun_changes_nothing(maria):
    event = maria.event([user("app", grant_privileges="SELECT", host="LocalHost")])
    maria.invoke(event)
    assert ("app", "localhost") in maria.accounts()
    assert maria.invoke(event)["changed"] is False


@pytest.mark.parametrize(
    ("name", "host"), [("app", "app@10.0.0.1"), ("emoji\U0001f600", "%"), ("ok", "bücher.de")]
)
def test_mariadb_names_it_would_store_differently_are_refused_and_nothing_changes(
    maria, name, host
):
    with pytest.raises(tool.InvalidEvent):
        maria.invoke(maria.event([user("innocent"), user(name, "secret-x", host=host)]))
    assert maria.accounts() == set()
    assert len(maria.sm.list_secrets()["SecretList"]) == 1
