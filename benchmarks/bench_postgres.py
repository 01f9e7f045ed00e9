"""Benchmark: hundreds of users in one event against a real PostgreSQL and moto's Secrets
Manager (over HTTP), with an RDS-like master.

    .venv/bin/python benchmarks/bench_postgres.py [--users 500] [--tables 50] [--major 15]

Prints one table: for each run (create all, no-op re-run, update some, delete some) the wall
time, the SQL statements and the Secrets Manager calls; then the same end state reached the
naive way (one GRANT ... ON ALL TABLES per user, in one transaction) for the ratio. Times on a
shared 2-core machine wobble; the counts do not. moto answers in ~2 ms, real AWS in ~20-50 ms,
so the AWS call counts matter more than the times for what a real run costs."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import boto3
import psycopg2
from psycopg2 import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "deploy"), str(ROOT)]

import lambda_function as tool  # noqa: E402

from tests.servers import start_moto, start_postgres  # noqa: E402

MASTER, MASTER_PASSWORD, DATABASE = "master", "master-password-for-bench", "bench"


def connect(server, user, password, database):
    connection = psycopg2.connect(**server.dsn(user=user, password=password, dbname=database))
    connection.autocommit = True
    return connection


def prepare(server, secrets, tables: int) -> None:
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
    value = {
        "engine": "postgres",
        "host": server.host,
        "port": server.port,
        "username": MASTER,
        "password": MASTER_PASSWORD,
    }
    secrets.create_secret(Name="bench-master", SecretString=json.dumps(value))


def users(count: int, action: str = "create") -> list[dict]:
    """One DDL owner; the others alternate read-write and read-only, all granted by it."""
    entries = [
        {
            "db_user": "owner",
            "user_secret_name": "bench-owner",
            "grant_ddl": True,
            "grant_privileges": "SELECT,INSERT,UPDATE,DELETE",
            "action": action,
        }
    ]
    for i in range(1, count):
        privileges = "SELECT,INSERT,UPDATE,DELETE" if i % 2 else "SELECT"
        entries.append(
            {
                "db_user": f"user{i:04}",
                "user_secret_name": f"bench-user{i:04}",
                "grant_privileges": privileges,
                "grantor": "owner",
                "action": action,
            }
        )
    return entries


def invoke(server, entries: list[dict]) -> tuple[float, dict]:
    event = {
        "secret_name": "bench-master",
        "database_name": DATABASE,
        "rds_host": server.host,
        "rds_port": server.port,
        "db_engine": "postgres",
        "ssl_mode": "disable",
        "region": "us-east-1",
        "users": entries,
    }
    context = SimpleNamespace(aws_request_id="bench", get_remaining_time_in_millis=lambda: 900_000)
    started = time.perf_counter()
    report = tool.lambda_handler(event, context)
    return time.perf_counter() - started, report


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
            privileges = sql.SQL("SELECT, INSERT, UPDATE, DELETE" if i % 2 else "SELECT")
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


def row(name: str, seconds: float, report: dict) -> str:
    calls = report["stats"]["aws_calls"]
    changed = sum(u["result"] != "unchanged" for u in report["users"])
    return (
        f"| {name} | {seconds:.2f} s | {report['stats']['sql_statements']} | "
        f"{sum(calls.values())} ({', '.join(f'{k} {v}' for k, v in calls.items())}) | "
        f"{changed} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--tables", type=int, default=50)
    parser.add_argument("--major", type=int, default=15)
    args = parser.parse_args()
    tool.log.setLevel("WARNING")
    moto, url = start_moto()
    dummy = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}  # moto takes any
    os.environ.update(AWS_ENDPOINT_URL=url, **dummy)
    with tempfile.TemporaryDirectory() as workdir:
        server = start_postgres(args.major, Path(workdir))
        try:
            prepare(server, boto3.client("secretsmanager", region_name="us-east-1"), args.tables)
            every = users(args.users)
            tenth = [dict(u, action="update") for u in every[1 : 1 + args.users // 10]]
            leaving = [dict(u, action="delete") for u in every[-(args.users // 10) :]]
            runs = [
                ("create all", every),
                ("no-op re-run", every),
                (f"update {len(tenth)}", tenth),
                (f"delete {len(leaving)}", leaving),
            ]
            print(f"PostgreSQL {args.major}, {args.users} users, {args.tables} tables\n")
            print("| run | time | SQL statements | Secrets Manager calls | users changed |")
            print("|---|---|---|---|---|")
            first = None
            for name, entries in runs:
                seconds, report = invoke(server, entries)
                first = first or (seconds, report)
                print(row(name, seconds, report))
            naive_seconds, naive_statements = naive(server, args.users)
            stats = first[1]["stats"]
            print(
                f"\nThe table grants the naive way (one statement per user and scope, one "
                f"transaction): {naive_seconds:.2f} s, {naive_statements} statements. The "
                f"tool's first run spent {stats['sql_ms'] / 1000:.2f} s in SQL for "
                f"{stats['sql_statements']} statements: "
                f"{naive_statements / stats['sql_statements']:.1f}x fewer statements, "
                f"{naive_seconds / (stats['sql_ms'] / 1000):.1f}x less database time."
            )
        finally:
            server.stop()
            moto.stop()


if __name__ == "__main__":
    main()
