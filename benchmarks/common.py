"""What bench_postgres.py and bench_mysql.py share: the event's users, the invocation, the
master secret, the four runs, the result table and the naive-vs-tool ratio. Each script keeps
what is its engine's own (starting the server, the RDS-like master and the tables, the naive
way) and hands it to run().

Importing this module puts deploy/ and the repository on sys.path, so a script imports it
before tests.servers (isort keeps that order: this module sorts as third-party, tests as
first-party)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "deploy"), str(ROOT)]

import lambda_function as tool  # noqa: E402

from tests.servers import start_moto  # noqa: E402

MASTER, MASTER_PASSWORD, DATABASE = "master", "master-password-for-bench", "bench"
MASTER_SECRET, REGION = "bench-master", "us-east-1"
DML, RO = "SELECT, INSERT, UPDATE, DELETE", "SELECT"


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark takes; a script adds its own before parsing."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--tables", type=int, default=50)
    return parser


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


def store_master_secret(server, engine: str) -> None:
    """The master secret the event names, in moto's Secrets Manager."""
    value = {
        "engine": engine,
        "host": server.host,
        "port": server.port,
        "username": MASTER,
        "password": MASTER_PASSWORD,
    }
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secrets.create_secret(Name=MASTER_SECRET, SecretString=json.dumps(value))


def invoke(server, engine: str, entries: list[dict]) -> tuple[float, dict]:
    event = {
        "secret_name": MASTER_SECRET,
        "database_name": DATABASE,
        "rds_host": server.host,
        "rds_port": server.port,
        "db_engine": engine,
        "ssl_mode": "disable",
        "region": REGION,
        "users": entries,
    }
    context = SimpleNamespace(aws_request_id="bench", get_remaining_time_in_millis=lambda: 900_000)
    started = time.perf_counter()
    report = tool.lambda_handler(event, context)
    return time.perf_counter() - started, report


def runs(count: int) -> list[tuple[str, list[dict]]]:
    """Create all, the same again (nothing to do), update a tenth, delete a tenth."""
    every = users(count)
    tenth = [dict(u, action="update") for u in every[1 : 1 + count // 10]]
    leaving = [dict(u, action="delete") for u in every[-(count // 10) :]]
    return [
        ("create all", every),
        ("no-op re-run", every),
        (f"update {len(tenth)}", tenth),
        (f"delete {len(leaving)}", leaving),
    ]


def table_line(cells: list[str]) -> str:
    return f"| {' | '.join(cells)} |"


def header(columns: dict[str, str]) -> str:
    titles = ["run", "time", *columns.values(), "Secrets Manager calls", "users changed"]
    return f"{table_line(titles)}\n|{'---|' * len(titles)}"


def row(name: str, seconds: float, report: dict, columns: dict[str, str]) -> str:
    stats = report["stats"]
    calls = stats["aws_calls"]
    changed = sum(u["result"] != "unchanged" for u in report["users"])
    return table_line(
        [
            name,
            f"{seconds:.2f} s",
            *(str(stats[key]) for key in columns),
            f"{sum(calls.values())} ({', '.join(f'{k} {v}' for k, v in calls.items())})",
            str(changed),
        ]
    )


def ratio(naive_way: str, naive_seconds: float, naive_statements: int, stats: dict) -> str:
    """The naive way against the tool's first run."""
    sql_seconds = stats["sql_ms"] / 1000
    return (
        f"\n{naive_way}: {naive_seconds:.2f} s, {naive_statements} statements. The "
        f"tool's first run spent {sql_seconds:.2f} s in SQL for "
        f"{stats['sql_statements']} statements: "
        f"{naive_statements / stats['sql_statements']:.1f}x fewer statements, "
        f"{naive_seconds / max(sql_seconds, 0.001):.1f}x less database time."
    )


def run(
    args: argparse.Namespace,
    *,
    engine: str,
    start: Callable[[Path], Any],
    title: Callable[[Any], str],
    prepare: Callable[[Any, int], None],
    naive: Callable[[Any, int], tuple[float, int]],
    naive_way: str,
    columns: dict[str, str] | None = None,
) -> None:
    """Start moto and the server (start(workdir)), create the master, the databases and
    their tables (prepare(server, tables)) and the master secret, print the title line
    (title(server)) and a table row per run, then the ratio to naive(server, users), which
    reaches the same end state the naive way described by naive_way. columns: the report's
    stats to show, by key, with their titles (SQL statements first, always)."""
    columns = {"sql_statements": "SQL statements", **(columns or {})}
    tool.log.setLevel("WARNING")
    moto, url = start_moto()
    dummy = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}  # moto takes any
    os.environ.update(AWS_ENDPOINT_URL=url, **dummy)
    with tempfile.TemporaryDirectory() as workdir:
        server = start(Path(workdir))
        try:
            prepare(server, args.tables)
            store_master_secret(server, engine)
            print(f"{title(server)}, {args.users} users, {args.tables} tables\n")
            print(header(columns))
            first = None
            for name, entries in runs(args.users):
                seconds, report = invoke(server, engine, entries)
                first = first or report
                print(row(name, seconds, report, columns))
            print(ratio(naive_way, *naive(server, args.users), first["stats"]))
        finally:
            server.stop()
            moto.stop()
