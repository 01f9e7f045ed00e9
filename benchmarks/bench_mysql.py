"""Benchmark: hundreds of users in one event against a real MariaDB and moto's Secrets Manager
(over HTTP), with an RDS-like master.

    .venv/bin/python benchmarks/bench_mysql.py [--users 500] [--tables 50]

Prints one table: for each run (create all, no-op re-run, update some, delete some) the wall
time, the SQL statements, the catalog queries and the Secrets Manager calls; then the same end
state reached the naive way (one CREATE USER and one GRANT per user, run one by one, once the
tool's accounts are dropped) for the ratio. Times on a shared 2-core machine wobble; the counts
do not. moto answers in ~2 ms, real AWS in ~20-50 ms, so the AWS call counts matter more than
the times for what a real run costs. The MariaDB is the machine's own (`bash dev/setup.sh`
installs it); no MySQL 8 server can be had here, so MySQL 8 is not measured. What the two
benchmarks share is in common.py."""

from __future__ import annotations

import time

import common
import pymysql
from common import DATABASE, DML, MASTER, MASTER_PASSWORD, RO, tool

from tests.servers import RDS_MARIADB_MASTER_PRIVILEGES, start_mariadb


def connect(server, user, password, database=None):
    return pymysql.connect(
        **server.connect_args(user=user, password=password, database=database), autocommit=True
    )


def prepare(server, tables: int) -> None:
    with connect(server, server.root_user, server.root_password) as root, root.cursor() as cur:
        # Params always passed: PyMySQL turns %% into % only when it has params.
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (MASTER, MASTER_PASSWORD))
        cur.execute(
            f"GRANT {RDS_MARIADB_MASTER_PRIVILEGES} ON *.* TO %s@'%%' WITH GRANT OPTION", (MASTER,)
        )
    with connect(server, MASTER, MASTER_PASSWORD) as master, master.cursor() as cur:
        for database in (DATABASE, "naive"):
            cur.execute(f"CREATE DATABASE `{database}`")
            for i in range(tables):
                cur.execute(f"CREATE TABLE `{database}`.t{i} (id serial, x int)")


def drop_bench_users(server) -> None:
    """Drop what the tool's runs left, so the naive run starts from the same account table as
    the first run did: CREATE USER costs more the more accounts the server has."""
    with connect(server, server.root_user, server.root_password) as root, root.cursor() as cur:
        cur.execute("SELECT User FROM mysql.user WHERE User = 'owner' OR User LIKE 'user%%'", ())
        accounts = ", ".join(f"'{name}'@'%'" for (name,) in cur.fetchall())
        if accounts:
            cur.execute(f"DROP USER {accounts}")


def naive(server, count: int) -> tuple[float, int]:
    """The same accounts and grants, one CREATE USER and one GRANT per user, one by one (DDL
    commits by itself on MariaDB: there is no transaction to batch them in)."""
    drop_bench_users(server)
    statements = 0
    ddl = ", ".join(tool.MY_DDL_PRIVILEGES)
    with connect(server, MASTER, MASTER_PASSWORD, "naive") as connection:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for i in range(count):
                account = f"'naive{i:04}'@'%'"
                privileges = f"{DML}, {ddl}" if i == 0 else DML if i % 2 else RO
                # The hash, as the tool sends it, so the server does no hashing either way.
                verifier = tool.native_password_hash(f"password-{i}")
                for statement in (
                    f"CREATE USER {account} IDENTIFIED BY PASSWORD '{verifier}'",
                    f"GRANT {privileges} ON `naive`.* TO {account}",
                ):
                    cursor.execute(statement)
                    statements += 1
        return time.perf_counter() - started, statements


def main() -> None:
    common.run(
        common.argument_parser(__doc__).parse_args(),
        engine="mariadb",
        start=start_mariadb,
        title=lambda server: f"MariaDB {server.version}",
        prepare=prepare,
        naive=naive,
        naive_way="The accounts and grants the naive way (one CREATE USER and one GRANT per "
        "user, one by one)",
        columns={"catalog_queries": "catalog queries"},
    )


if __name__ == "__main__":
    main()
