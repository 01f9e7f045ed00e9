"""Benchmark: hundreds to thousands of users in one event against a real MariaDB and moto's
Secrets Manager (over HTTP, in a process of its own), with an RDS-like master.

    .venv/bin/python benchmarks/bench_mysql.py [--users 100,500,1000,2000,5000] [--tables 50]
        [--writes-per-second 1000] [--reads-per-second 1000] [--naive]

For each size (in a process of its own) and each run (first run, no-op, update all, delete
all): the wall time, the SQL statements applied, the catalog queries, the round trips
counted at the driver (every command PyMySQL sends), the Secrets Manager calls by kind; the
floor beside the no-op; the peak memory; then the growth exponents. With --naive, the same
accounts and grants the naive way (one CREATE USER and one GRANT per user, run one by one,
once the tool's accounts are dropped). Times on a shared 2-core machine wobble; the counts do
not. moto answers in ~2 ms, real AWS in ~20-50 ms, so the AWS call counts matter more than the
times for what a real run costs. The MariaDB is the machine's own (`bash dev/setup.sh`
installs it); no MySQL 8 server can be had here, so MySQL 8 is not measured. What the two
benchmarks share is in common.py."""

from __future__ import annotations

import time

import common
import pymysql
import pymysql.connections
from common import DATABASE, DML, MASTER, MASTER_PASSWORD, RO, count, tool

from dev.servers import RDS_MARIADB_MASTER_PRIVILEGES, start_mariadb


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


def count_round_trips() -> None:
    """Every command PyMySQL sends (a query, a commit, a ping) is a round trip."""
    connection = pymysql.connections.Connection
    send, connect = connection._execute_command, connection.connect

    def execute_command(self, command, sql):
        count("round_trips")
        return send(self, command, sql)

    def counting_connect(self, *args, **kwargs):
        count("connections")
        return connect(self, *args, **kwargs)

    connection._execute_command = execute_command
    connection.connect = counting_connect


def main() -> None:
    args = common.argument_parser(__doc__).parse_args()
    common.main(
        args,
        __file__,
        [],
        engine="mariadb",
        start=start_mariadb,
        title=lambda server: f"MariaDB {server.version}",
        prepare=prepare,
        count_round_trips=count_round_trips,
        naive=naive,
    )


if __name__ == "__main__":
    main()
