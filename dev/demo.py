"""Run the seed example against a throwaway PostgreSQL or MariaDB and a local Secrets Manager.

What it does, in order:

1. starts the database server (PostgreSQL 16 by default, or MariaDB with
   ``--engine mariadb``) and moto's Secrets Manager emulator;
2. sets up an RDS-like master user (PostgreSQL: CREATEROLE CREATEDB, not a
   superuser; MariaDB: the RDS master's privileges on *.*, without SUPER), the
   database ``airflow`` and the master secret;
3. runs ``deploy/lambda_function.py`` on ``lambda-invocation/seed-example.json``
   (pointed at the local server) and prints the report;
4. logs in as ``airflow-rw-ddl`` with the password from its secret, creates a
   table, then shows what each user can do on that table by trying it;
5. runs the same event again and checks that nothing changed.

Run it through ``bash dev/demo.sh [--engine mariadb] [--pg-major N]``, which
prepares the virtualenv first. Exit status: 0 when every step worked, 1 otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pymysql
from psycopg2 import errors, sql

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dev.options import demo_options  # noqa: E402
from dev.servers import (  # noqa: E402
    RDS_MARIADB_MASTER_PRIVILEGES,
    moto_client,
    start_mariadb,
    start_moto,
    start_postgres,
)

HANDLER = REPO / "deploy" / "lambda_function.py"
SEED = REPO / "lambda-invocation" / "seed-example.json"
REGION = "us-east-1"
MASTER_USER = "master"
DDL_USER = "airflow-rw-ddl"
DML_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
TRUTHY = {"true", "yes", "1"}


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


def read_secret(sm, name: str) -> dict:
    return json.loads(sm.get_secret_value(SecretId=name)["SecretString"])


def secret_versions(sm, names: list[str]) -> dict[str, dict]:
    return {name: sm.describe_secret(SecretId=name).get("VersionIdsToStages", {}) for name in names}


# --------------------------------------------------------------------------- the event


def declared_privileges(user: dict) -> set[str]:
    """The user's grant_privileges as a set of upper-case names (ALL kept as ALL)."""
    declared = user.get("grant_privileges") or []
    if isinstance(declared, str):
        declared = declared.split(",")
    return {p.strip().upper() for p in declared if p.strip()}


def grants_ddl(user: dict) -> bool:
    return str(user.get("grant_ddl", "false")).strip().lower() in TRUTHY


# --------------------------------------------------------------------------- the engines
#
# What differs between PostgreSQL and MariaDB: starting the server, the RDS-like master, the
# table, the probes and how a denial looks. Everything else (the story in run_demo, the
# handler, the secrets, the privilege table) is shared and talks to an Engine.


class Engine:
    """One database engine as the demo drives it. Subclasses set the attributes and fill in
    the methods that raise NotImplementedError."""

    name: str  # db_engine in the event and engine in the master secret
    table: str  # the table the DDL user creates, qualified
    scope: str  # where CREATE TABLE is tried
    probes: dict[str, str]  # privilege (column of the table) -> statement that needs only it
    probe_note: str  # how the probes leave nothing behind
    access_note: str  # how the other users reach the new table
    master_note: str  # what create_master makes the master
    database_note: str  # how the master relates to the database create_master makes

    def __init__(self) -> None:
        self.server = None

    @property
    def label(self) -> str:
        """The engine's name for headings."""
        raise NotImplementedError

    def start(self, workdir: Path) -> str:
        """Start the server; returns its name and version for the output."""
        raise NotImplementedError

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def create_master(self, database: str) -> str:
        """Create the RDS-like master and, as it, the database; returns its password."""
        raise NotImplementedError

    def describe_master(self, database: str) -> str:
        """What create_master made, in one line."""
        return f"{self.master_note}; database {database!r} {self.database_note}"

    def login(self, user: str, password: str, database: str):
        """A connection as a managed user, in a transaction the probes roll back."""
        raise NotImplementedError

    def create_table(self, conn) -> None:
        """As the DDL user: create the table and insert one row."""
        raise NotImplementedError

    @contextmanager
    def probing(self, database: str):
        """Around the probes: set up (and tear down) what they need."""
        yield

    def can_do(self, conn, statement: str) -> bool:
        """Try the statement as the connection's user; False if the server denies it; leave
        nothing behind that a later probe would see."""
        raise NotImplementedError

    def expected(self, user: dict) -> dict[str, bool]:
        """What the event says the user may do, probe by probe."""
        raise NotImplementedError

    def notes(self) -> list[str]:
        """Anything to say under the privilege table."""
        return []

    def master_secret(self, event: dict, password: str) -> dict:
        """The master secret, with the keys of an RDS master secret."""
        return {
            "engine": self.name,
            "host": self.server.host,
            "port": self.server.port,
            "username": MASTER_USER,
            "password": password,
            "dbname": event["database_name"],
        }

    def local_event(self, event: dict) -> dict:
        """The seed event, pointed at the throwaway server."""
        return dict(
            event,
            db_engine=self.name,
            rds_host=self.server.host,
            rds_port=self.server.port,
            ssl_mode="disable",
        )


class Postgres(Engine):
    name = "postgres"
    table = "public.dag_run"
    scope = "public"
    # One statement per privilege. Each needs only that privilege on the table (no WHERE
    # clause, so UPDATE and DELETE do not also need SELECT). INSERT fills the serial column,
    # so it also needs USAGE on the table's sequence.
    probes = {
        "SELECT": "SELECT * FROM public.dag_run LIMIT 1",
        "INSERT": "INSERT INTO public.dag_run (dag_id, run_id, state) "
        "VALUES ('probe', 'p', 'queued')",
        "UPDATE": "UPDATE public.dag_run SET state = 'probe'",
        "DELETE": "DELETE FROM public.dag_run",
        "TRUNCATE": "TRUNCATE public.dag_run",
        "CREATE TABLE": "CREATE TABLE public.demo_probe (id integer)",
    }
    probe_note = "each statement was run as that user, with its secret's password, and rolled back"
    access_note = "the other users get access through default privileges, with no new grant"
    master_note = f"role {MASTER_USER!r}: LOGIN CREATEROLE CREATEDB, not a superuser"
    database_note = "owned by it"

    def __init__(self, major: int) -> None:
        super().__init__()
        self.major = major
        self.public_create = False

    @property
    def label(self) -> str:
        return f"PostgreSQL {self.major}"

    def start(self, workdir: Path) -> str:
        self.server = start_postgres(self.major, workdir / "postgres")
        return f"PostgreSQL {self.server.major}"

    def connect(self, **overrides):
        return psycopg2.connect(**self.server.dsn(**overrides))

    def run_autocommit(self, conn, statement) -> None:
        """Run one statement outside a transaction (CREATE DATABASE needs that), then close."""
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def create_master(self, database: str) -> str:
        password = secrets.token_urlsafe(24)
        self.run_autocommit(
            self.connect(),
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB PASSWORD {}").format(
                sql.Identifier(MASTER_USER), sql.Literal(password)
            ),
        )
        self.run_autocommit(
            self.connect(user=MASTER_USER, password=password, dbname="postgres"),
            sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)),
        )
        if self.major < 15:
            # Before 15, a new database's public schema belongs to the bootstrap superuser. On
            # RDS the master may grant on it as rds_superuser; a plain CREATEROLE role may not.
            # Give it to the master, as PostgreSQL 15+ does through pg_database_owner.
            self.run_autocommit(
                self.connect(dbname=database),
                sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(MASTER_USER)),
            )
        return password

    def login(self, user: str, password: str, database: str):
        return self.connect(user=user, password=password, dbname=database)

    def create_table(self, conn) -> None:
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

    @contextmanager
    def probing(self, database: str):
        """PUBLIC's built-in CREATE on schema public (granted up to PostgreSQL 14, not from 15)."""
        conn = self.connect(dbname=database)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT has_schema_privilege('public', 'public', 'CREATE')")
                self.public_create = cur.fetchone()[0]
        finally:
            conn.close()
        yield

    def can_do(self, conn, statement: str) -> bool:
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
            return True
        except errors.InsufficientPrivilege:
            return False
        finally:
            conn.rollback()

    def expected(self, user: dict) -> dict[str, bool]:
        """The DDL user owns the table, so it may do everything on it."""
        every = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
        declared = declared_privileges(user)
        if "ALL" in declared or user["db_user"] == DDL_USER:
            declared = set(every)
        expected = {p: p in declared for p in every}
        expected["CREATE TABLE"] = grants_ddl(user) or self.public_create
        return expected

    def notes(self) -> list[str]:
        if not self.public_create:
            return []
        return [
            "Note: on this PostgreSQL version every role may CREATE in schema public through"
            " PUBLIC's built-in grant. The tool leaves PUBLIC's grants alone; revoke it yourself"
            " with REVOKE CREATE ON SCHEMA public FROM PUBLIC."
        ]


# ER_DBACCESS_DENIED_ERROR, ER_TABLEACCESS_DENIED_ERROR, ER_COLUMNACCESS_DENIED_ERROR
MARIADB_DENIED = {1044, 1142, 1143}


class MariaDb(Engine):
    name = "mariadb"
    table = "airflow.dag_run"
    scope = "airflow"
    # DML runs in a transaction that is rolled back. TRUNCATE and CREATE TABLE commit at once
    # on MariaDB: TRUNCATE (which needs DROP) is tried on an empty copy of dag_run, with the
    # same grants (all on airflow.*), and a table the CREATE TABLE probe made is dropped
    # right after it.
    probes = {
        "SELECT": "SELECT * FROM airflow.dag_run LIMIT 1",
        "INSERT": "INSERT INTO airflow.dag_run (dag_id, run_id, state) "
        "VALUES ('probe', 'p', 'queued')",
        "UPDATE": "UPDATE airflow.dag_run SET state = 'probe'",
        "DELETE": "DELETE FROM airflow.dag_run",
        "TRUNCATE": "TRUNCATE TABLE airflow.dag_run_empty_copy",
        "CREATE TABLE": "CREATE TABLE airflow.demo_probe (id integer)",
    }
    probe_note = (
        "each statement was run as that user, with its secret's password; DML was rolled back."
        "\nMariaDB commits TRUNCATE and CREATE TABLE at once, so TRUNCATE (which needs DROP on"
        "\nairflow.*) was tried on an empty copy of dag_run, and a table CREATE TABLE made was"
        "\ndropped right after"
    )
    access_note = "the other users get access through their grants on airflow.*, with no new grant"
    master_note = (
        f"user '{MASTER_USER}'@'%': the RDS master's privileges ON *.* WITH GRANT OPTION, no SUPER"
    )
    database_note = "created by it"

    label = "MariaDB"

    def start(self, workdir: Path) -> str:
        self.server = start_mariadb(workdir / "mariadb")
        return f"MariaDB {self.server.version}"

    def connect(self, user: str | None = None, password: str | None = None, **overrides):
        """Root by default, in autocommit mode."""
        credentials = {"user": user, "password": password} if user else {}
        return pymysql.connect(
            **self.server.connect_args(**credentials, **overrides), autocommit=True
        )

    def as_root(self, statement: str, params: tuple = ()) -> None:
        with self.connect() as conn, conn.cursor() as cur:
            # Params always passed: PyMySQL turns %% into % only when it has params.
            cur.execute(statement, params)

    def create_master(self, database: str) -> str:
        password = secrets.token_urlsafe(24)
        self.as_root("CREATE USER %s@'%%' IDENTIFIED BY %s", (MASTER_USER, password))
        self.as_root(
            f"GRANT {RDS_MARIADB_MASTER_PRIVILEGES} ON *.* TO %s@'%%' WITH GRANT OPTION",
            (MASTER_USER,),
        )
        with self.connect(MASTER_USER, password) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{database}`")
        return password

    def login(self, user: str, password: str, database: str):
        return pymysql.connect(
            **self.server.connect_args(user=user, password=password, database=database),
            autocommit=False,
        )

    def create_table(self, conn) -> None:
        with conn.cursor() as cur:
            cur.execute(
                """
                CREATE TABLE airflow.dag_run (
                    id integer AUTO_INCREMENT PRIMARY KEY,
                    dag_id varchar(250) NOT NULL,
                    run_id varchar(250) NOT NULL,
                    state varchar(50) NOT NULL,
                    execution_date timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
                ) ENGINE=InnoDB
                """
            )
            cur.execute(
                "INSERT INTO airflow.dag_run (dag_id, run_id, state)"
                " VALUES ('example_dag', 'manual__demo', 'success')"
            )
        conn.commit()

    @contextmanager
    def probing(self, database: str):
        self.as_root("CREATE TABLE airflow.dag_run_empty_copy LIKE airflow.dag_run")
        try:
            yield
        finally:
            self.as_root("DROP TABLE airflow.dag_run_empty_copy")

    def can_do(self, conn, statement: str) -> bool:
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
            return True
        except pymysql.err.OperationalError as exc:
            if exc.args[0] in MARIADB_DENIED:
                return False
            raise
        finally:
            conn.rollback()
            self.as_root("DROP TABLE IF EXISTS airflow.demo_probe")

    def expected(self, user: dict) -> dict[str, bool]:
        """Grants on airflow.* cover every table; TRUNCATE needs DROP, which grant_ddl gives
        (and which the tool grants for a declared TRUNCATE); CREATE TABLE needs CREATE."""
        declared = declared_privileges(user)
        if "ALL" in declared:
            declared |= {*DML_PRIVILEGES, "DROP", "CREATE"}
        ddl = grants_ddl(user)
        expected = {p: p in declared for p in DML_PRIVILEGES}
        expected["TRUNCATE"] = ddl or bool(declared & {"TRUNCATE", "DROP"})
        expected["CREATE TABLE"] = ddl or "CREATE" in declared
        return expected


# --------------------------------------------------------------------------- handler


def write_local_event(event: dict, workdir: Path) -> Path:
    path = workdir / "event.json"
    path.write_text(json.dumps(event, indent=2) + "\n")
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


def login_as(engine: Engine, event: dict, sm, user: dict):
    """Connect to the event's database as a managed user, with its secret's password."""
    secret = read_secret(sm, user["user_secret_name"])
    return engine.login(secret["username"], secret["password"], event["database_name"])


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


def show_abilities(engine: Engine, event: dict, sm) -> None:
    """Try every probe as every user and compare with what the event declares."""
    header = ["user", *engine.probes]
    rows, mismatches = [], []
    with engine.probing(event["database_name"]):
        for user in event["users"]:
            expected = engine.expected(user)
            conn = login_as(engine, event, sm, user)
            try:
                row = [user["db_user"]]
                for name, statement in engine.probes.items():
                    actual = engine.can_do(conn, statement)
                    if actual == expected[name]:
                        row.append("yes" if actual else "no")
                    else:
                        row.append(("yes" if actual else "no") + " (!)")
                        mismatches.append(
                            f"{user['db_user']}: {name} is {'allowed' if actual else 'denied'},"
                            " the event says it should be"
                            f" {'allowed' if expected[name] else 'denied'}"
                        )
                rows.append(row)
            finally:
                conn.close()
    print_table(header, rows)
    print(f"\n({engine.probe_note})")
    for note in engine.notes():
        print(note)
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


def run_demo(engine: Engine, workdir: Path) -> None:
    event = json.loads(SEED.read_text())
    if not HANDLER.exists():
        raise DemoError(f"{HANDLER.relative_to(REPO)} does not exist yet")
    database = event["database_name"]

    heading(f"1. Starting {engine.label} and the Secrets Manager emulator (moto)")
    moto_server = None
    try:
        started = time.monotonic()
        version = engine.start(workdir)
        moto_server, moto_url = start_moto()
        print(
            f"{version} on {engine.server.host}:{engine.server.port}, moto on {moto_url}"
            f" ({time.monotonic() - started:.1f} s)"
        )
        sm = moto_client("secretsmanager", moto_url, REGION)
        env = aws_environment(moto_url)

        heading("2. Creating an RDS-like master user, the database and the master secret")
        password = engine.create_master(database)
        sm.create_secret(
            Name=event["secret_name"],
            SecretString=json.dumps(engine.master_secret(event, password)),
        )
        print(f"{engine.describe_master(database)}; secret {event['secret_name']!r}")

        heading("3. Running the seed example (lambda-invocation/seed-example.json)")
        event = engine.local_event(event)
        event_path = write_local_event(event, workdir)
        print(
            f"(db_engine={engine.name}, and rds_host, rds_port and ssl_mode=disable point it at"
            " the local server)"
        )
        run_handler(event_path, env)

        heading("4. The users' secrets (passwords hidden)")
        show_secrets(sm, event)

        heading(f"5. {DDL_USER} creates {engine.table} and inserts a row")
        ddl_user = next(u for u in event["users"] if u["db_user"] == DDL_USER)
        conn = login_as(engine, event, sm, ddl_user)
        try:
            engine.create_table(conn)
        finally:
            conn.close()
        print(f"done; {engine.access_note}")

        heading(
            f"6. What each user can do on {engine.table},"
            f" and can it CREATE TABLE in {engine.scope}?"
        )
        show_abilities(engine, event, sm)

        heading("7. Running the same event again")
        names = [u["user_secret_name"] for u in event["users"]]
        versions_before = secret_versions(sm, names)
        report = run_handler(event_path, env)
        check_nothing_changed(report, versions_before, secret_versions(sm, names))
    finally:
        if moto_server is not None:
            moto_server.stop()
        engine.stop()


def main(argv: list[str] | None = None) -> int:
    args = demo_options(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    engine = MariaDb() if args.engine == "mariadb" else Postgres(args.pg_major or 16)

    with tempfile.TemporaryDirectory(prefix="rds-initializer-demo-") as tmp:
        try:
            run_demo(engine, Path(tmp))
        except DemoError as exc:
            print(f"\nDEMO FAILED: {exc}", file=sys.stderr)
            return 1
    print("\nDemo finished: every step worked.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
