"""Benchmark: hundreds to thousands of users in one event against a real PostgreSQL and moto's
Secrets Manager (over HTTP, in a process of its own), with an RDS-like master.

    .venv/bin/python benchmarks/bench_postgres.py [--users 100,500,1000,2000,5000]
        [--tables 50] [--major 15] [--writes-per-second 1000]
        [--reads-per-second 1000] [--naive]
        [--refused-above 2000] [--shape grants|login-only]

For each size (in a process of its own) and each run (first run, no-op, update all, delete
all): the wall time, the SQL statements applied, the catalog queries, the round trips
counted at the driver (a psycopg2 connection and cursor factory), the Secrets Manager calls
by kind; the floor beside the no-op; the peak memory; then the growth exponents. With
--naive, the same table grants the naive way (one GRANT ... ON ALL TABLES per user, in one
transaction). Times on a shared 2-core machine wobble; the counts do not. moto answers in
~2 ms, real AWS in ~20-50 ms, so the AWS call counts matter more than the times for what a
real run costs. What the two benchmarks share is in common.py.

PostgreSQL keeps a table's privileges in its pg_class row, which holds about 2,400 entries:
the tool refuses an event that would give one table more than 2,200 (before writing
anything). 5,000 users of the default shape are such an event, measured as its refusal
(--refused-above 2000); --shape login-only (users with CONNECT and USAGE and no table
privileges; --tables 0) measures PostgreSQL with 5,000 users."""

from __future__ import annotations

import time

import common
import psycopg2
import psycopg2.extensions
from common import DATABASE, DML, MASTER, MASTER_PASSWORD, RO, count, tool
from psycopg2 import sql

from dev.servers import start_postgres


def connect(server, user, password, database):
    connection = psycopg2.connect(**server.dsn(user=user, password=password, dbname=database))
    connection.autocommit = True
    return connection


def prepare(server, tables: int) -> None:
    with connect(server, "postgres", server.superpassword, "postgres") as admin:
        admin.cursor().execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB PASSWORD {}").format(
                sql.Identifier(MASTER), sql.Literal(MASTER_PASSWORD)
            )
        )
    for database in (DATABASE, "naive"):
        master = connect(server, MASTER, MASTER_PASSWORD, "postgres")
        master.cursor().execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        master.close()
        with connect(server, MASTER, MASTER_PASSWORD, database) as in_database:
            for i in range(tables):
                in_database.cursor().execute(f"CREATE TABLE t{i} (id serial, x int)")


def naive(server, count: int) -> tuple[float, int]:
    """The same grants, one statement per user and scope, in one transaction."""
    connection = psycopg2.connect(
        **server.dsn(user=MASTER, password=MASTER_PASSWORD, dbname="naive")
    )
    statements = 0
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for i in range(count):
            name = sql.Identifier(f"naive{i:04}")
            privileges = sql.SQL(DML if i % 2 else RO)
            verifier = tool.scram_verifier(f"password-{i}")
            for statement in (
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(name, sql.Literal(verifier)),
                sql.SQL("GRANT CONNECT ON DATABASE naive TO {}").format(name),
                sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(name),
                sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA public TO {}").format(privileges, name),
                sql.SQL("GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(name),
            ):
                cursor.execute(statement)
                statements += 1
    connection.commit()
    connection.close()
    return time.perf_counter() - started, statements


IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE


class CountingCursor(psycopg2.extensions.cursor):
    def execute(self, query, vars=None):
        connection = self.connection
        if not connection.autocommit and connection.info.transaction_status == IDLE:
            count("round_trips")  # the BEGIN psycopg2 sends first
        count("round_trips")
        return super().execute(query, vars)


class Counting:
    """Mixed into the connection class the tool asks for (its PgConnection, or psycopg2's
    own): counts the connection, and hands out counting cursors."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        count("connections")

    def cursor(self, *args, **kwargs):
        kwargs.setdefault("cursor_factory", CountingCursor)
        return super().cursor(*args, **kwargs)

    def commit(self):
        if self.info.transaction_status != IDLE:
            count("round_trips")
        return super().commit()

    def rollback(self):
        if self.info.transaction_status != IDLE:
            count("round_trips")
        return super().rollback()


def count_round_trips() -> None:
    """Every connection the tool opens counts its statements, BEGINs and COMMITs, whatever
    connection class it asks for (an earlier version only counted where it asked for none,
    and the tool's own connections showed 0 round trips)."""
    connect = psycopg2.connect
    counting: dict[type, type] = {}

    def counting_connect(*args, **kwargs):
        factory = kwargs.get("connection_factory") or psycopg2.extensions.connection
        if factory not in counting:
            counting[factory] = type(f"Counting{factory.__name__}", (Counting, factory), {})
        kwargs["connection_factory"] = counting[factory]
        return connect(*args, **kwargs)

    psycopg2.connect = counting_connect


def main() -> None:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--major", type=int, default=15)
    args = parser.parse_args()
    common.main(
        args,
        __file__,
        ["--major", str(args.major)],
        engine="postgres",
        start=lambda workdir: start_postgres(args.major, workdir),
        title=lambda server: f"PostgreSQL {args.major}",
        prepare=prepare,
        count_round_trips=count_round_trips,
        naive=naive,
    )


if __name__ == "__main__":
    main()
