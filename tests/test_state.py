"""Section 10, reading PostgreSQL's state: a fixed number of catalog queries however many users,
through catalogs an RDS master may read."""

from __future__ import annotations

import psycopg2
import psycopg2.extensions
import pytest
from conftest import tool, user
from lambda_function import parse_event, read_pg_state


class CountingCursor(psycopg2.extensions.cursor):
    executed = 0

    def execute(self, query, vars=None):  # noqa: A002 - psycopg2's own parameter name
        CountingCursor.executed += 1
        return super().execute(query, vars)


def queries_to_read(rds, users: list[dict]) -> tuple[int, tool.PgState]:
    connection = psycopg2.connect(
        **rds.server.dsn(user=rds.master, password=rds.master_password, dbname=rds.database)
    )
    CountingCursor.executed = 0
    try:
        with connection.cursor(cursor_factory=CountingCursor) as cursor:
            state = read_pg_state(cursor, parse_event(rds.event(users)))
    finally:
        connection.close()
    return CountingCursor.executed, state


def test_the_number_of_catalog_queries_does_not_grow_with_the_users(rds):
    with rds.as_master() as connection:
        rds.run_sql(connection, "; ".join(f"CREATE TABLE t{i} (id serial)" for i in range(20)))
    few = [user(f"u{i}", grant_privileges="SELECT") for i in range(3)]
    many = [user(f"u{i}", grant_privileges="SELECT") for i in range(60)]
    rds.invoke(rds.event(many))

    assert queries_to_read(rds, few)[0] == queries_to_read(rds, many)[0] == 4
    deleting = [user(f"u{i}", action="delete") for i in range(60)]
    assert (
        queries_to_read(rds, deleting)[0] == 6
    )  # plus the dependencies elsewhere and outside the schemas


def test_the_state_holds_the_grants_of_the_managed_users_only(rds):
    rds.invoke(rds.seed_event())
    with rds.as_master() as connection:
        rds.run_sql(
            connection,
            "CREATE TABLE t (id int); CREATE ROLE bystander;"
            'GRANT SELECT ON t TO bystander, "airflow-ro-dml"',
        )

    _, state = queries_to_read(rds, [user("airflow-ro-dml")])

    t = next(o for o in state.objects if o.name == "t")
    assert t.owner == rds.master and t.kind == "table"
    assert t.held == {"airflow-ro-dml": {rds.master: frozenset({"SELECT"})}}
    assert state.master == rds.master and state.server_major == rds.major
    assert state.roles[rds.master].superuser is False
    assert {(d.owner, d.kind, d.privilege) for d in state.default_grants} == {
        ("airflow-rw-ddl", "tables", "SELECT"),
        ("airflow-rw-ddl", "sequences", "SELECT"),
    }


def test_the_master_cannot_read_pg_authid_so_no_test_would_pass_if_the_tool_did(rds):
    with rds.as_master() as connection, pytest.raises(psycopg2.errors.InsufficientPrivilege):
        rds.run_sql(connection, "SELECT rolpassword FROM pg_authid")
