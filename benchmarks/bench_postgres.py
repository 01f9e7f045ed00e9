"""Benchmark: hundreds of users in one event against a real PostgreSQL and moto's Secrets
Manager (over HTTP), with an RDS-like master.

    .venv/bin/python benchmarks/bench_postgres.py [--users 500] [--tables 50] [--major 15]

Prints one table: for each run (create all, no-op re-run, update some, delete some) the wall
time, the SQL statements and the Secrets Manager calls; then the same end state reached the
naive way (one GRANT ... ON ALL TABLES per user, in one transaction) for the ratio. Times on a
shared 2-core machine wobble; the counts do not. moto answers in ~2 ms, real AWS in ~20-50 ms,
so the AWS call counts matter more than the times for what a real run costs. What the two
benchmarks share is in common.py."""

from __future__ import annotations

import time

import common
import psycopg2
from common import DATABASE, DML, MASTER, MASTER_PASSWORD, RO, tool
from psycopg2 import sql

from tests.servers import start_postgres


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


def main() -> None:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--major", type=int, default=15)
    args = parser.parse_args()
    common.run(
        args,
        engine="postgres",
        start=lambda workdir: start_postgres(args.major, workdir),
        title=lambda server: f"PostgreSQL {args.major}",
        prepare=prepare,
        naive=naive,
        naive_way="The table grants the naive way (one statement per user and scope, one "
        "transaction)",
    )


if __name__ == "__main__":
    main()
