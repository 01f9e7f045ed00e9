"""Benchmark: what a SCRAM verifier computed by the tool saves the PostgreSQL server.

    .venv/bin/python benchmarks/bench_scram.py [--roles 100] [--major 15] [--rounds 3]

Creates `--roles` roles in one transaction three ways: with the SCRAM-SHA-256 verifiers the
tool computes (PASSWORD 'SCRAM-SHA-256$4096:...'), with the plaintext passwords (the server
hashes them), and without a password; prints the best of `--rounds` for each, in seconds.
The verifiers are computed before the clock starts. PostgreSQL checks every new password
against the empty one (CREATE ROLE refuses an empty password), and for a verifier that means
running its 4096 PBKDF2 iterations: the server hashes as much either way."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common
import psycopg2
from common import tool
from psycopg2 import sql

from dev.servers import start_postgres


def create_roles(server, passwords: list[str | None]) -> float:
    connection = psycopg2.connect(
        **server.dsn(user="postgres", password=server.superpassword, dbname="postgres")
    )
    try:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for i, password in enumerate(passwords):
                name = sql.Identifier(f"scram{i:04}")
                if password is None:
                    cursor.execute(sql.SQL("CREATE ROLE {} LOGIN").format(name))
                else:
                    cursor.execute(
                        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                            name, sql.Literal(password)
                        )
                    )
        connection.commit()
        seconds = time.perf_counter() - started
        with connection.cursor() as cursor:
            for i in range(len(passwords)):
                cursor.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(f"scram{i:04}")))
        connection.commit()
        return seconds
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roles", type=int, default=100)
    parser.add_argument("--major", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    plain = [f"password-{i}-{'x' * 20}" for i in range(args.roles)]
    started = time.perf_counter()
    verifiers = [tool.scram_verifier(p) for p in plain]
    client = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="bench-scram-") as workdir:
        server = start_postgres(args.major, Path(workdir))
        try:
            ways = {
                "SCRAM verifiers computed by the tool": verifiers,
                "plaintext passwords": plain,
                "no password": [None] * args.roles,
            }
            best = dict.fromkeys(ways, float("inf"))
            for _ in range(args.rounds):  # the ways take turns: the machine's load hits each
                for name, passwords in ways.items():
                    best[name] = min(best[name], create_roles(server, passwords))
        finally:
            server.stop()
    print(
        f"PostgreSQL {args.major}, {args.roles} CREATE ROLEs in one transaction, best of "
        f"{args.rounds}:"
    )
    for name, seconds in best.items():
        print(f"- {name}: {seconds:.3f} s")
    print(f"(computing the {args.roles} verifiers in the tool took {client:.3f} s)")


if __name__ == "__main__":
    common.ROOT  # noqa: B018 - imported for its sys.path set-up
    main()
