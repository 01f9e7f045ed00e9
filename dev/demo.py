"""Run the seed example against a throwaway PostgreSQL and a local Secrets Manager.

What it does, in order:

1. starts PostgreSQL (16 by default) and moto's Secrets Manager emulator;
2. sets up an RDS-like master user (CREATEROLE CREATEDB, not a superuser), the
   database ``airflow`` and the master secret;
3. runs ``deploy/lambda_function.py`` on ``lambda-invocation/seed-example.json``
   (pointed at the local server) and prints the report;
4. logs in as ``airflow-rw-ddl`` with the password from its secret, creates a
   table, then shows what each user can do on that table by trying it;
5. runs the same event again and checks that nothing changed.

Run it through ``bash dev/demo.sh``, which prepares the virtualenv first.
Exit status: 0 when every step worked, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
import psycopg2
from psycopg2 import errors, sql

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.servers import start_moto, start_postgres  # noqa: E402

HANDLER = REPO / "deploy" / "lambda_function.py"
SEED = REPO / "lambda-invocation" / "seed-example.json"
REGION = "us-east-1"
MASTER_USER = "master"
DDL_USER = "airflow-rw-ddl"
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
TRUTHY = {"true", "yes", "1"}

# One statement per privilege. Each needs only that privilege on the table
# (no WHERE clause, so UPDATE and DELETE do not also need SELECT). INSERT fills
# the serial column, so it also needs USAGE on the table's sequence.
PROBES = {
    "SELECT": "SELECT * FROM public.dag_run LIMIT 1",
    "INSERT": "INSERT INTO public.dag_run (dag_id, run_id, state) VALUES ('probe', 'p', 'queued')",
    "UPDATE": "UPDATE public.dag_run SET state = 'probe'",
    "DELETE": "DELETE FROM public.dag_run",
    "TRUNCATE": "TRUNCATE public.dag_run",
    "CREATE TABLE": "CREATE TABLE public.demo_probe (id integer)",
}


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


# --------------------------------------------------------------------------- output


def heading(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def print_report(report: dict) -> None:
    print(json.dumps(report, indent=2))


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


# --------------------------------------------------------------------------- AWS


def aws_environment(moto_url: str) -> dict[str, str]:
    """The environment the handler runs with: moto, dummy keys, no real profile."""
    env = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        env.pop(name, None)
    env.update(
        AWS_ENDPOINT_URL=moto_url,
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto accepts any key
    )
    env.setdefault("LOG_LEVEL", "WARNING")
    return env


def secrets_client(moto_url: str):
    return boto3.client(
        "secretsmanager",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto accepts any key
    )


def read_secret(sm, name: str) -> dict:
    return json.loads(sm.get_secret_value(SecretId=name)["SecretString"])


def secret_versions(sm, names: list[str]) -> dict[str, dict]:
    return {name: sm.describe_secret(SecretId=name).get("VersionIdsToStages", {}) for name in names}


# --------------------------------------------------------------------------- PostgreSQL


def connect(server, **overrides):
    return psycopg2.connect(**server.dsn(**overrides))


def create_master(server, database: str) -> str:
    """Create an RDS-like master role and, as that role, the application database."""
    password = secrets.token_urlsafe(24)
    run_autocommit(
        connect(server),
        sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB PASSWORD {}").format(
            sql.Identifier(MASTER_USER), sql.Literal(password)
        ),
    )
    run_autocommit(
        connect(server, user=MASTER_USER, password=password, dbname="postgres"),
        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)),
    )
    if server.major < 15:
        # Before 15, a new database's public schema belongs to the bootstrap superuser. On RDS
        # the master may grant on it as rds_superuser; a plain CREATEROLE role may not. Give
        # it to the master, as PostgreSQL 15+ does through pg_database_owner.
        run_autocommit(
            connect(server, dbname=database),
            sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(MASTER_USER)),
        )
    return password


def run_autocommit(conn, statement) -> None:
    """Run one statement outside a transaction (CREATE DATABASE needs that), then close."""
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def store_master_secret(sm, event: dict, server, password: str) -> None:
    value = {
        "engine": "postgres",
        "host": server.host,
        "port": server.port,
        "username": MASTER_USER,
        "password": password,
        "dbname": event["database_name"],
    }
    sm.create_secret(Name=event["secret_name"], SecretString=json.dumps(value))


def login_as(server, event: dict, sm, user: dict):
    """Connect to the event's database as a managed user, with its secret's password."""
    secret = read_secret(sm, user["user_secret_name"])
    return connect(
        server,
        user=secret["username"],
        password=secret["password"],
        dbname=event["database_name"],
    )


def create_dag_run_table(conn) -> None:
    with conn, conn.cursor() as cur:
        cur.execute(
            """
            CREATE TABLE public.dag_run (
                id serial PRIMARY KEY,
                dag_id text NOT NULL,
                run_id text NOT NULL,
                state text NOT NULL,
                execution_date timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        cur.execute(
            "INSERT INTO public.dag_run (dag_id, run_id, state)"
            " VALUES ('example_dag', 'manual__demo', 'success')"
        )


def can_do(conn, statement: str) -> bool:
    """Try the statement and roll it back; False if PostgreSQL denies the privilege."""
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
        return True
    except errors.InsufficientPrivilege:
        return False
    finally:
        conn.rollback()


# --------------------------------------------------------------------------- handler


def write_local_event(event: dict, server, workdir: Path) -> Path:
    """The seed event, pointed at the throwaway server."""
    local = dict(event, rds_host=server.host, rds_port=server.port, ssl_mode="disable")
    path = workdir / "event.json"
    path.write_text(json.dumps(local, indent=2) + "\n")
    return path


def parse_report(stdout: str) -> dict:
    """The last JSON object on stdout that looks like a report (log lines may precede it)."""
    decoder = json.JSONDecoder()
    found = None
    index = stdout.find("{")
    while index != -1:
        try:
            value, end = decoder.raw_decode(stdout, index)
        except json.JSONDecodeError:
            index = stdout.find("{", index + 1)
            continue
        if isinstance(value, dict) and "status" in value and "users" in value:
            found = value
        index = stdout.find("{", end)
    if found is None:
        raise DemoError(f"the handler printed no report; its output was:\n{stdout}")
    return found


def run_handler(event_path: Path, env: dict[str, str]) -> dict:
    command = [sys.executable, str(HANDLER), str(event_path)]
    print("$ " + " ".join(["python", str(HANDLER.relative_to(REPO)), event_path.name]))
    # S603: the command is this repository's own handler and a file this script wrote.
    proc = subprocess.run(  # noqa: S603
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    if proc.stderr:
        sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise DemoError(
            f"the handler exited with status {proc.returncode}; its output was:\n{proc.stdout}"
        )
    report = parse_report(proc.stdout)
    print_report(report)
    if report.get("status") != "success":
        raise DemoError(f"the report's status is {report.get('status')!r}, not 'success'")
    return report


# --------------------------------------------------------------------------- steps


def show_secrets(sm, event: dict) -> None:
    rows = []
    for user in event["users"]:
        secret = read_secret(sm, user["user_secret_name"])
        rows.append(
            [
                user["user_secret_name"],
                str(secret.get("username")),
                str(secret.get("port")),
                str(secret.get("dbname")),
                "***" if secret.get("password") else "(none)",
            ]
        )
    print_table(["secret", "username", "port", "dbname", "password"], rows)


def public_may_create(server, database: str) -> bool:
    """PUBLIC's built-in CREATE on schema public (granted up to PostgreSQL 14, not from 15)."""
    conn = connect(server, dbname=database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT has_schema_privilege('public', 'public', 'CREATE')")
            return cur.fetchone()[0]
    finally:
        conn.close()


def expected_abilities(user: dict, owner: str, public_create: bool) -> dict[str, bool]:
    """What the event says the user may do on a table that `owner` created."""
    declared = user.get("grant_privileges") or []
    if isinstance(declared, str):
        declared = declared.split(",")
    declared = {p.strip().upper() for p in declared if p.strip()}
    if "ALL" in declared or user["db_user"] == owner:
        declared = set(TABLE_PRIVILEGES)
    expected = {p: p in declared for p in TABLE_PRIVILEGES}
    grant_ddl = str(user.get("grant_ddl", "false")).strip().lower() in TRUTHY
    expected["CREATE TABLE"] = grant_ddl or public_create
    return expected


def show_abilities(server, event: dict, sm) -> None:
    """Try every probe as every user and compare with what the event declares."""
    header = ["user", *PROBES]
    rows, mismatches = [], []
    public_create = public_may_create(server, event["database_name"])
    for user in event["users"]:
        expected = expected_abilities(user, DDL_USER, public_create)
        conn = login_as(server, event, sm, user)
        try:
            row = [user["db_user"]]
            for name, statement in PROBES.items():
                actual = can_do(conn, statement)
                if actual == expected[name]:
                    row.append("yes" if actual else "no")
                else:
                    row.append(("yes" if actual else "no") + " (!)")
                    mismatches.append(
                        f"{user['db_user']}: {name} is {'allowed' if actual else 'denied'},"
                        f" the event says it should be {'allowed' if expected[name] else 'denied'}"
                    )
            rows.append(row)
        finally:
            conn.close()
    print_table(header, rows)
    print("\n(each statement was run as that user, with its secret's password, and rolled back)")
    if public_create:
        print(
            "Note: on this PostgreSQL version every role may CREATE in schema public through"
            " PUBLIC's built-in grant. The tool leaves PUBLIC's grants alone; revoke it yourself"
            " with REVOKE CREATE ON SCHEMA public FROM PUBLIC."
        )
    if mismatches:
        raise DemoError("privileges differ from the event:\n  " + "\n  ".join(mismatches))


def check_nothing_changed(report: dict, versions_before: dict, versions_after: dict) -> None:
    changed_users = [u["db_user"] for u in report.get("users", []) if u.get("changes")]
    print(f'\n"changed": {json.dumps(report.get("changed"))}', end="")
    if report.get("changed") is False and not changed_users:
        print("  <- the second run found nothing to do")
    else:
        print()
        raise DemoError(f"the second run changed something: {changed_users or 'see the report'}")
    if versions_before != versions_after:
        raise DemoError("the second run wrote new secret versions")
    print("Secret versions are the same as after the first run: no Secrets Manager write.")


# --------------------------------------------------------------------------- main


def run_demo(pg_major: int, workdir: Path) -> None:
    event = json.loads(SEED.read_text())
    if not HANDLER.exists():
        raise DemoError(f"{HANDLER.relative_to(REPO)} does not exist yet")

    heading(f"1. Starting PostgreSQL {pg_major} and the Secrets Manager emulator (moto)")
    server = start_postgres(pg_major, workdir / "postgres")
    moto_server = None
    try:
        moto_server, moto_url = start_moto()
        print(f"PostgreSQL {server.major} on {server.host}:{server.port}, moto on {moto_url}")
        sm = secrets_client(moto_url)
        env = aws_environment(moto_url)

        heading("2. Creating an RDS-like master user, the database and the master secret")
        password = create_master(server, event["database_name"])
        store_master_secret(sm, event, server, password)
        print(
            f"role {MASTER_USER!r}: LOGIN CREATEROLE CREATEDB, not a superuser;"
            f" database {event['database_name']!r} owned by it;"
            f" secret {event['secret_name']!r}"
        )

        heading("3. Running the seed example (lambda-invocation/seed-example.json)")
        event_path = write_local_event(event, server, workdir)
        print("(rds_host, rds_port and ssl_mode=disable point it at the local server)")
        run_handler(event_path, env)

        heading("4. The users' secrets (passwords hidden)")
        show_secrets(sm, event)

        heading(f"5. {DDL_USER} creates public.dag_run and inserts a row")
        ddl_user = next(u for u in event["users"] if u["db_user"] == DDL_USER)
        conn = login_as(server, event, sm, ddl_user)
        try:
            create_dag_run_table(conn)
        finally:
            conn.close()
        print("done; the other users get access through default privileges, with no new grant")

        heading("6. What each user can do on public.dag_run, and can it CREATE TABLE in public?")
        show_abilities(server, event, sm)

        heading("7. Running the same event again")
        names = [u["user_secret_name"] for u in event["users"]]
        versions_before = secret_versions(sm, names)
        report = run_handler(event_path, env)
        check_nothing_changed(report, versions_before, secret_versions(sm, names))
    finally:
        if moto_server is not None:
            moto_server.stop()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pg-major",
        type=int,
        default=16,
        choices=range(14, 19),
        metavar="{14..18}",
        help="PostgreSQL major version to run (default 16)",
    )
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="rds-initializer-demo-") as tmp:
        try:
            run_demo(args.pg_major, Path(tmp))
        except DemoError as exc:
            print(f"\nDEMO FAILED: {exc}", file=sys.stderr)
            return 1
    print("\nDemo finished: every step worked.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
