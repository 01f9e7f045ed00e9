"""Shared fixtures: real PostgreSQL servers (14 to 18) and a real MariaDB server, moto's Secrets
Manager over HTTP, and a fresh RDS-like database per test whose master is NOT a superuser
(PostgreSQL: only CREATEROLE and CREATEDB; MariaDB: the RDS master's grants, without SUPER), as
on RDS. `rds` (PostgreSQL) and `maria` (MariaDB) share one helper API (`RdsLike`)."""

from __future__ import annotations

import contextlib
import copy
import inspect
import itertools
import json
import os
import secrets as random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FunctionType, SimpleNamespace
from typing import Any, ClassVar

import boto3
import psycopg2
import pymysql
import pytest
import requests
from psycopg2 import sql

ROOT = Path(__file__).resolve().parent.parent
HANDLER = ROOT / "deploy" / "lambda_function.py"
sys.path.insert(0, str(ROOT / "deploy"))
sys.path.insert(0, str(ROOT))

import lambda_function as tool  # noqa: E402

from dev.servers import (  # noqa: E402
    PG_VERSIONS,
    RDS_MARIADB_MASTER_PRIVILEGES,
    create_moto_functions,
    start_mariadb,
    start_moto,
    start_postgres,
)

PG_MAJORS = [
    int(m) for m in os.environ.get("PG_MAJORS", ",".join(map(str, PG_VERSIONS))).split(",")
]
REGION = "us-east-1"
SEED = json.loads((ROOT / "lambda-invocation" / "seed-example.json").read_text())
# The keys of a report and of each of its users, as docs/report-and-errors.md shows them (a dry
# run's report adds "sql").
REPORT_KEYS = frozenset(
    {
        "status",
        "dry_run",
        "changed",
        "engine",
        "host",
        "database",
        "users",
        "warnings",
        "stats",
        "duration_ms",
    }
)
USER_REPORT_KEYS = frozenset(
    {"db_user", "action", "grantor", "result", "changes", "secret", "rotation"}
)
_numbers = itertools.count(1)


class Session(psycopg2.extensions.connection):
    """An autocommit connection that `with` closes (psycopg2's own would open a transaction)."""

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def open_session(**dsn: Any) -> Session:
    connection = psycopg2.connect(connection_factory=Session, **dsn)
    connection.autocommit = True
    return connection


@pytest.fixture(scope="session")
def moto_url():
    server, url = start_moto()
    saved = {
        k: os.environ.get(k)
        for k in (
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        )
    }
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S105 - moto's dummy credentials
    )
    yield url
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture
def secretsmanager(moto_url):
    """A boto3 client on an empty moto."""
    requests.post(f"{moto_url}/moto-api/reset", timeout=10)
    return boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_url)


@pytest.fixture
def rotation_function(secretsmanager, moto_url) -> str:
    """The ARN of a Lambda function in moto's Lambda service, where moto's RotateSecret looks
    up the function it is given (it refuses one that does not exist, as AWS does). moto runs
    no rotation function without Docker (dev/servers.py turns Docker off): RotateSecret
    stores the settings and never moves a staging label of its own."""
    (arn,) = create_moto_functions(moto_url, ["rotate-db-users"], REGION)
    return arn


def announce(config: pytest.Config, line: str) -> None:
    """One line on the terminal, outside pytest's capture, so that a long run shows which
    server its tests run on (pytest groups the tests of each PostgreSQL major together)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        # -q's progress dots leave the line open without pytest knowing (ensure_newline).
        if getattr(reporter._tw, "width_of_current_line", 0):
            reporter.write("\n")
        reporter.write_line(f"--- {line}", bold=True)


@contextlib.contextmanager
def announced(config: pytest.Config, name: str, marker: str, start):
    """Start a server with `start()`, announcing it and its stop with their times."""
    began = time.monotonic()
    server = start()
    announce(
        config,
        f"{name} started on {server.host}:{server.port} ({time.monotonic() - began:.1f} s);"
        f" tests marked {marker}",
    )
    try:
        yield server
    finally:
        server.stop()
        announce(config, f"{name} stopped")


# The per-engine fixture `db`: a test that takes it runs once on every engine, as `rds`
# (PostgreSQL, once per major of PG_MAJORS) and as `maria` (MariaDB).
ENGINE_FIXTURES = ("rds", "maria")


def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> list | None:
    """Collect a test that takes `db` once per engine fixture, each copy using that fixture, so
    that its server is among the test's fixtures before any runs: the markers below, the ids
    (pg14..pg18, mariadb) and pytest's grouping of the tests by server all follow from it, as
    for a test that takes `rds` or `maria` itself. (A fixture that looks its server up while
    the test runs, `request.getfixturevalue`, is seen by none of them.)"""
    if not (
        inspect.isfunction(obj)
        and collector.istestfunction(obj, name)
        and "db" in inspect.signature(obj).parameters
        and not hasattr(obj, "engine_fixture")
    ):
        return None
    items: list = []
    for fixture in ENGINE_FIXTURES:
        on_engine = _on_engine(obj, fixture)
        items += collector.ihook.pytest_pycollect_makeitem(
            collector=collector, name=name, obj=on_engine
        )
    return items


def _on_engine(test: Any, fixture: str) -> Any:
    """A clone of `test` with a `usefixtures(fixture)` mark, which puts that fixture (and its
    server) among the test's fixtures. pytest takes the items' fixtures and parameters from the
    clone, and then runs `test` itself, found by its name."""
    clone = FunctionType(
        test.__code__, test.__globals__, test.__name__, test.__defaults__, test.__closure__
    )
    clone.__dict__.update(test.__dict__)
    clone.__qualname__, clone.__module__ = test.__qualname__, test.__module__
    clone.engine_fixture = fixture  # type: ignore[attr-defined]
    clone.pytestmark = [  # type: ignore[attr-defined]
        *getattr(test, "pytestmark", []),
        pytest.mark.usefixtures(fixture),
    ]
    return clone


@pytest.fixture
def db(request: pytest.FixtureRequest) -> RdsLike:
    """The RDS-like database of each engine in turn (`rds`, then `maria`), through the shared
    `RdsLike` API: the engine fixture pytest_pycollect_makeitem gave this copy of the test. A
    test takes `db` itself; a fixture that takes it would run on no engine."""
    engines = [name for name in ENGINE_FIXTURES if name in request.fixturenames]
    if len(engines) != 1:
        pytest.fail(
            f"{request.node.name}: `db` needs exactly one of {ENGINE_FIXTURES} among the test's"
            f" fixtures, not {engines}: take `db` in the test's own arguments only",
            pytrace=False,
        )
    return request.getfixturevalue(engines[0])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test by the servers it runs on, from its fixtures, so that `-m postgres`,
    `-m mariadb` or `-m "not postgres and not mariadb"` (no server at all) pick a subset."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "pg_server" in fixtures:
            item.add_marker(pytest.mark.postgres)
        if "mariadb_server" in fixtures:
            item.add_marker(pytest.mark.mariadb)


@pytest.fixture(scope="session", params=PG_MAJORS, ids=lambda major: f"pg{major}")
def pg_server(request, tmp_path_factory):
    major = request.param
    workdir = tmp_path_factory.mktemp(f"pg{major}")
    with announced(
        request.config, f"PostgreSQL {major}", "postgres", lambda: start_postgres(major, workdir)
    ) as server:
        yield server


@dataclass
class RdsLike:
    """What every engine's per-test database shares: its server, its database, its master and
    the master secret in moto; plus helpers to invoke the tool and to look at the effects the
    way an application would. Subclasses say how to open a connection and pass SQL params."""

    ENGINE: ClassVar[str]  # the event's db_engine
    OTHER_ENGINES_PRIVILEGE: ClassVar[str]  # a privilege of the other engine, not of this one

    server: Any
    database: str
    master: str
    master_password: str
    secret_name: str
    sm: Any

    def event(self, users: list[dict], **extra: Any) -> dict:
        return {
            "secret_name": self.secret_name,
            "database_name": self.database,
            "rds_host": self.server.host,
            "rds_port": self.server.port,
            "region": REGION,
            "db_engine": self.ENGINE,
            "ssl_mode": "disable",
            "users": users,
            **extra,
        }

    def seed_event(self, **extra: Any) -> dict:
        """The seed example of docs/CONTRACT.md §2 as written, but for this engine and the
        local server."""
        local = {
            "rds_host": self.server.host,
            "rds_port": self.server.port,
            "ssl_mode": "disable",
            "db_engine": self.ENGINE,
        }
        return {**copy.deepcopy(SEED), **local, **extra}

    def cli(self, event: dict, *args: str, env: dict | None = None) -> Any:
        """Run the command line as a user does: `python deploy/lambda_function.py EVENT`."""
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
            json.dump(event, file)
        try:
            return subprocess.run(  # noqa: S603
                [sys.executable, str(HANDLER), file.name, *args],
                capture_output=True,
                text=True,
                timeout=300,
                env={**os.environ, **(env or {})},
                check=False,
            )
        finally:
            os.unlink(file.name)

    def invoke(self, event: dict) -> dict:
        context = SimpleNamespace(
            aws_request_id="test", get_remaining_time_in_millis=lambda: 600_000
        )
        return tool.lambda_handler(event, context)

    def invoke_at_debug(self, event: dict, capsys) -> tuple[str, list[str]]:
        """Invoke with LOG_LEVEL DEBUG; returns everything logged and the SQL it shows."""
        level = tool.log.level
        tool.log.setLevel("DEBUG")  # setLevel, not the attribute: the logger caches decisions
        try:
            self.invoke(event)
        finally:
            tool.log.setLevel(level)
        logged = capsys.readouterr().out
        return logged, [json.loads(line)["sql"] for line in logged.splitlines() if '"sql"' in line]

    def open_connection(self, host: str, port: int, user: str, password: str, database: str):
        """A TCP autocommit connection that `with` closes."""
        raise NotImplementedError

    def connect(self, user: str, password: str, database: str | None = None):
        return self.open_connection(
            self.server.host, self.server.port, user, password, database or self.database
        )

    def as_master(self, database: str | None = None):
        return self.connect(self.master, self.master_password, database)

    def secret(self, name: str, stage: str = "AWSCURRENT") -> dict:
        return json.loads(
            self.sm.get_secret_value(SecretId=name, VersionStage=stage)["SecretString"]
        )

    def versions(self, name: str) -> dict[str, list[str]]:
        return self.sm.describe_secret(SecretId=name)["VersionIdsToStages"]

    def end_test_rotation(self, name: str) -> None:
        """moto's RotateSecret with RotateImmediately false runs only the testSecret step, and
        leaves that step's AWSPENDING version behind where AWS removes it (AWS's finishSecret
        step moves the label away).
        Remove it as AWS would; left there, it is what a rotation in progress looks like."""
        for version, stages in self.versions(name).items():
            if "AWSPENDING" in stages:
                self.sm.update_secret_version_stage(
                    SecretId=name, VersionStage="AWSPENDING", RemoveFromVersionId=version
                )

    def login(self, secret_name: str):
        """Log in the way the application does: with the host, port, username, password and
        dbname in the user's secret."""
        value = self.secret(secret_name)
        return self.open_connection(
            value["host"], value["port"], value["username"], value["password"], value["dbname"]
        )

    @staticmethod
    def sql_params(params: tuple) -> Any:
        """What the driver's cursor.execute gets for `params`."""
        return params

    def run_sql(self, connection, statement: str, *params: Any) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(statement, self.sql_params(params))
            return list(cursor.fetchall()) if cursor.description else []

    def can(self, secret_name: str, statement: str) -> bool:
        """Whether the account the secret names may run the statement, logged in as the
        application would. Rolled back either way (MySQL commits DDL by itself)."""
        connection = self.login(secret_name)
        try:
            self.run_sql(connection, statement)
            return True
        except Exception as error:
            if self.denied(error):
                return False
            raise
        finally:
            connection.rollback()
            connection.close()

    def logs_in(self, user: str, password: str) -> bool:
        """Whether `user` logs in with `password`: False when the server says the password is
        wrong; any other error is raised."""
        try:
            self.connect(user, password).close()
        except Exception as error:
            if self.wrong_password(error):
                return False
            raise
        return True

    # What each engine does its own way; the engine-neutral tests call these.

    def current_user(self, connection) -> str:
        """The name of the account the connection logged in as."""
        raise NotImplementedError

    @staticmethod
    def wrong_password(error: Exception) -> bool:
        raise NotImplementedError

    def hold_the_tools_lock(self):
        """A master connection holding the lock every invocation takes; closing it releases it."""
        raise NotImplementedError

    def grant_by_hand(self, privilege: str, to: str, owner_secret: str) -> None:
        """Give `to` `privilege` on the database's tables behind the tool's back, as someone
        allowed to would (PostgreSQL: the tables' owner, logged in from `owner_secret`)."""
        raise NotImplementedError

    def set_password_by_hand(self, user: str, password: str) -> None:
        raise NotImplementedError

    def grants_target(self, tables: int) -> str:
        """How a change in the report names the tables a user's privileges are on, when the
        database holds `tables` tables."""
        raise NotImplementedError

    @staticmethod
    def denied(error: Exception) -> bool:
        """Whether the server refused the statement for want of a privilege."""
        if getattr(error, "pgcode", None) == "42501":  # insufficient_privilege
            return True
        # MySQL: access denied to the database, a table, a column
        return isinstance(error, pymysql.err.MySQLError) and error.args[0] in (1044, 1142, 1143)


@dataclass
class Rds(RdsLike):
    """One RDS-like PostgreSQL database: its master is a CREATEROLE CREATEDB non-superuser that
    owns the database."""

    ENGINE: ClassVar[str] = "postgres"
    OTHER_ENGINES_PRIVILEGE: ClassVar[str] = "DROP"

    @property
    def major(self) -> int:
        return self.server.major

    def open_connection(self, host: str, port: int, user: str, password: str, database: str):
        return open_session(
            **self.server.dsn(host=host, port=port, user=user, password=password, dbname=database)
        )

    def superuser(self, database: str | None = None):
        return self.connect(self.server.superuser, self.server.superpassword, database)

    @staticmethod
    def sql_params(params: tuple) -> Any:
        return params or None  # psycopg2 leaves % alone only without params

    def roles(self) -> set[str]:
        with self.superuser() as connection:
            rows = self.run_sql(connection, "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_'")
        return {name for (name,) in rows}

    user_names = roles  # what the engine-neutral tests ask: which users exist

    def current_user(self, connection) -> str:
        return self.run_sql(connection, "SELECT session_user")[0][0]

    @staticmethod
    def wrong_password(error: Exception) -> bool:
        return isinstance(error, psycopg2.OperationalError) and "authentication failed" in str(
            error
        )

    def hold_the_tools_lock(self):
        connection = self.as_master("postgres")
        self.run_sql(connection, "SELECT pg_advisory_lock(%s)", tool.LOCK_KEY)
        return connection

    def grant_by_hand(self, privilege: str, to: str, owner_secret: str) -> None:
        with self.login(owner_secret) as connection, connection.cursor() as cursor:
            cursor.execute(
                sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA public TO {}").format(
                    sql.SQL(privilege), sql.Identifier(to)
                )
            )

    def set_password_by_hand(self, user: str, password: str) -> None:
        with self.as_master() as connection, connection.cursor() as cursor:
            cursor.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(password)
                )
            )

    def grants_target(self, tables: int) -> str:
        return f"{tables} table{'' if tables == 1 else 's'} in public"

    def master_memberships(self) -> set[tuple]:
        """The master's memberships with their options (16+: inherit and set)."""
        columns = "m.inherit_option, m.set_option" if self.major >= 16 else "NULL, NULL"
        with self.superuser() as connection:
            rows = self.run_sql(
                connection,
                f"""
                SELECT r.rolname, m.admin_option, {columns} FROM pg_auth_members m
                JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
                WHERE u.rolname = %s""",
                self.master,
            )
        return set(rows)


# The ways RDS databases are laid out (README, "Layouts this is tested on"). The bootstrap
# superuser of the test cluster stands for RDS's rdsadmin.
PG_LAYOUTS = {
    "template1": "created by the master from template1, the default",
    "template0": "created by the master from template0 (Terraform's default, pg_dump -C)",
    "app-owner": "owned by an application role the master created (CREATE DATABASE ... OWNER)",
    "foreign-role": "the DDL user existed before the master, made by another admin role",
    "rds-superuser": "template1, and the master a member of rds_superuser, as on RDS",
}


@pytest.fixture
def rds(pg_server, secretsmanager, request):
    """An RDS-like database on the session's PostgreSQL; `layout` (indirect parameter, one of
    PG_LAYOUTS) says how it was made, template1 when not given."""
    layout = getattr(request, "param", "template1")
    number = next(_numbers)
    master, password = f"master_{number}", random.token_urlsafe(16)
    database = SEED["database_name"]
    admin = open_session(**pg_server.dsn())
    with admin.cursor() as cursor:
        baseline = _role_names(cursor)
        cursor.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB PASSWORD {}").format(
                sql.Identifier(master), sql.Literal(password)
            )
        )
    with open_session(**pg_server.dsn(user=master, password=password)) as as_master:
        _create_database(as_master.cursor(), layout, database, master, pg_server.major)
    if pg_server.major < 15 and layout != "template0":
        # On 14 RDS's template1 gives the public schema to the master (it may change its
        # owner and revoke PUBLIC from it); here it belongs to the bootstrap superuser, as on
        # RDS in a database made from template0, which belongs to rdsadmin.
        with open_session(**pg_server.dsn(dbname=database)) as in_database:
            in_database.cursor().execute(
                sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(master))
            )
    if layout == "foreign-role":
        _role_made_by_another_admin(admin, pg_server, "airflow-rw-ddl")
    if layout == "rds-superuser":
        _rds_superuser(admin, master, pg_server.major)
    secret_name = SEED["secret_name"]
    secretsmanager.create_secret(
        Name=secret_name,
        SecretString=json.dumps(
            {
                "engine": "postgres",
                "host": pg_server.host,
                "port": pg_server.port,
                "username": master,
                "password": password,
                "dbname": database,
            }
        ),
    )
    yield Rds(pg_server, database, master, password, secret_name, secretsmanager)
    _drop_everything_new(admin, baseline)
    admin.close()


def _create_database(cursor, layout: str, database: str, master: str, major: int) -> None:
    name = sql.Identifier(database)
    if layout == "template0":
        cursor.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(name))
    elif layout == "app-owner":
        # Terraform's way: a role, the database given to it, the master's membership given
        # back; on 16+ the master keeps only what it holds as the role's creator (ADMIN).
        cursor.execute("CREATE ROLE app_owner NOLOGIN")
        membership = "WITH SET TRUE, INHERIT FALSE" if major >= 16 else ""
        cursor.execute(
            sql.SQL("GRANT app_owner TO {} " + membership).format(sql.Identifier(master))
        )
        cursor.execute(sql.SQL("CREATE DATABASE {} OWNER app_owner").format(name))
        cursor.execute(sql.SQL("REVOKE app_owner FROM {}").format(sql.Identifier(master)))
    else:
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(name))


def _role_made_by_another_admin(admin, pg_server, role: str) -> None:
    """`role` made by old_admin, another CREATEROLE role: on 16+ only old_admin holds ADMIN
    OPTION on it, as after an in-place upgrade or when another team made it."""
    with admin.cursor() as cursor:
        cursor.execute("CREATE ROLE old_admin LOGIN CREATEROLE PASSWORD 'old-admin-pw'")
    with open_session(**pg_server.dsn(user="old_admin", password="old-admin-pw")) as old:
        old.cursor().execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))


def _rds_superuser(admin, master: str, major: int) -> None:
    """RDS's rds_superuser, as pg_dumpall of real instances shows it: the predefined roles it
    holds WITH ADMIN OPTION (15+ adds pg_checkpoint, pg_read_all_data, pg_write_all_data), and
    granted to the master without it. The master then inherits reading and writing every
    table, which must change nothing the tool decides."""
    held = ["pg_monitor", "pg_signal_backend"]
    if major >= 15:
        held += ["pg_checkpoint", "pg_read_all_data", "pg_write_all_data"]
    with admin.cursor() as cursor:
        cursor.execute("CREATE ROLE rds_superuser NOLOGIN")
        cursor.execute(f"GRANT {', '.join(held)} TO rds_superuser WITH ADMIN OPTION")
        cursor.execute(sql.SQL("GRANT rds_superuser TO {}").format(sql.Identifier(master)))


def _role_names(cursor) -> set[str]:
    cursor.execute("SELECT rolname FROM pg_roles")
    return {name for (name,) in cursor.fetchall()}


def _drop_everything_new(admin, baseline: set[str]) -> None:
    """Drop the test's databases, then its roles, so the next test starts from a clean cluster."""
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT datname FROM pg_database WHERE datname NOT IN "
            "('postgres', 'template0', 'template1')"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        extra = sorted(_role_names(cursor) - baseline)
        if extra:
            roles = sql.SQL(", ").join(map(sql.Identifier, extra))
            cursor.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(roles))
            cursor.execute(sql.SQL("DROP ROLE {}").format(roles))


# What the master user of Amazon RDS for MariaDB holds (10.5+, where BINLOG MONITOR replaced
# REPLICATION CLIENT): everything an application owner needs, WITH GRANT OPTION, but no SUPER,
# FILE or SHUTDOWN, and not ALL PRIVILEGES on *.*.


# One param, so that the id of every test on MariaDB says so, as pg14..pg18 do on PostgreSQL.
@pytest.fixture(scope="session", params=["mariadb"])
def mariadb_server(request, tmp_path_factory):
    """One throwaway MariaDB for the session (127.0.0.1, a free port, root with a password).
    Fails, never skips, when MariaDB is not installed: `bash dev/setup.sh` installs it."""
    workdir = tmp_path_factory.mktemp("mariadb")
    with announced(request.config, "MariaDB", "mariadb", lambda: start_mariadb(workdir)) as server:
        yield server


def mariadb_quote(name: str) -> str:
    """A backquoted MariaDB identifier (database, table)."""
    return "`" + name.replace("`", "``") + "`"


@dataclass
class Maria(RdsLike):
    """One RDS-like MariaDB database: `master`@'%' holds the RDS master's grants (no SUPER).

    Connections are PyMySQL ones in autocommit mode; `with` closes them. `run_sql` always
    passes params (an empty tuple too): PyMySQL turns %% into % only when it has params, so
    `'u'@'%%'` without them would name the host `%%`.
    """

    ENGINE: ClassVar[str] = "mariadb"
    OTHER_ENGINES_PRIVILEGE: ClassVar[str] = "MAINTAIN"

    preexisting: frozenset[tuple[str, str]] = field(default=frozenset(), repr=False)

    def open_connection(self, host: str, port: int, user: str, password: str, database: str):
        return pymysql.connect(
            **self.server.connect_args(
                host=host, port=int(port), user=user, password=password, database=database
            ),
            autocommit=True,
        )

    def superuser(self, database: str | None = None):
        """A root connection (root may do anything; the master may not)."""
        return self.connect(self.server.root_user, self.server.root_password, database)

    root = superuser

    def accounts(self) -> set[tuple[str, str]]:
        """(user, host) of every account and role (host '') the test created: those that were
        there before it, the master included, are left out."""
        with self.root() as connection:
            rows = self.run_sql(connection, "SELECT User, Host FROM mysql.user")
        return set(rows) - self.preexisting

    def user_names(self) -> set[str]:
        return {user for user, _ in self.accounts()}

    def current_user(self, connection) -> str:
        (account,) = self.run_sql(connection, "SELECT CURRENT_USER()")[0]
        return account.rsplit("@", 1)[0]  # user@host; the tool's hosts hold no @

    @staticmethod
    def wrong_password(error: Exception) -> bool:
        return isinstance(error, pymysql.err.OperationalError) and error.args[0] == 1045

    def hold_the_tools_lock(self):
        connection = self.as_master()
        self.run_sql(connection, "SELECT GET_LOCK(%s, 0)", tool.TOOL)
        return connection

    def grant_by_hand(self, privilege: str, to: str, owner_secret: str) -> None:
        with self.root() as connection:
            self.run_sql(
                connection,
                f"GRANT {privilege} ON {mariadb_quote(self.database)}.* TO %s@'%%'",
                to,
            )

    def set_password_by_hand(self, user: str, password: str) -> None:
        with self.root() as connection:
            self.run_sql(connection, "ALTER USER %s@'%%' IDENTIFIED BY %s", user, password)

    def grants_target(self, tables: int) -> str:
        return f"{self.database}.*"

    def grants(self, user: str, host: str = "%", database: str | None = None) -> set[str]:
        """The privileges `user`@`host` holds on `database`.* (default: the test database), from
        information_schema.SCHEMA_PRIVILEGES read as root, e.g. {"SELECT", "INSERT"}; plus
        "GRANT OPTION" if it may grant them on. Only grants made to the account itself: not
        those of its roles, nor table-level ones. For a role, host is ''."""
        with self.root() as connection:
            rows = self.run_sql(
                connection,
                "SELECT PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.SCHEMA_PRIVILEGES "
                "WHERE GRANTEE = %s AND TABLE_SCHEMA = %s",
                f"'{user}'@'{host}'",
                database or self.database,
            )
        privileges = {privilege for privilege, _ in rows}
        if any(grantable == "YES" for _, grantable in rows):
            privileges.add("GRANT OPTION")
        return privileges

    def global_grants(self, user: str, host: str = "%") -> set[str]:
        """The privileges `user`@`host` holds on *.* (information_schema.USER_PRIVILEGES, USAGE
        left out), plus "GRANT OPTION" as in `grants`; the tool's users should have none."""
        with self.root() as connection:
            rows = self.run_sql(
                connection,
                "SELECT PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.USER_PRIVILEGES "
                "WHERE GRANTEE = %s AND PRIVILEGE_TYPE <> 'USAGE'",
                f"'{user}'@'{host}'",
            )
        privileges = {privilege for privilege, _ in rows}
        if any(grantable == "YES" for _, grantable in rows):
            privileges.add("GRANT OPTION")
        return privileges


@pytest.fixture
def maria(mariadb_server, secretsmanager):
    """A fresh `airflow` database on the session's MariaDB, and an RDS-like master for it.

    The master `master_N`@'%' (random password) holds what the master user of Amazon RDS for
    MariaDB holds, RDS_MARIADB_MASTER_PRIVILEGES ON *.* WITH GRANT OPTION: it may create users and
    grant them anything it holds, but it has no SUPER, FILE or SHUTDOWN and no ALL PRIVILEGES,
    because RDS keeps those for itself (managed service: no host access, no server-wide admin;
    the `mysql.rds_*` procedures stand in for them). So a test passes here only if the tool
    makes do without SUPER, as it must on RDS. The master secret is in moto under the seed's
    secret_name, with the keys of an RDS master secret (engine "mariadb").

    Teardown ends the sessions of the accounts the test created, drops the databases and
    accounts (roles too) that were not there at setup, and takes back what was granted to
    PUBLIC or on dropped databases (MariaDB keeps grants when a database is dropped), so tests
    are independent.
    """
    number = next(_numbers)
    master, password = f"master_{number}", random.token_urlsafe(16)
    database = SEED["database_name"]
    admin = pymysql.connect(**mariadb_server.connect_args(autocommit=True))
    accounts_before = _mariadb_accounts(admin)
    databases_before = _mariadb_databases(admin) - {database}
    try:
        with admin.cursor() as cursor:
            quoted = mariadb_quote(database)
            cursor.execute(f"DROP DATABASE IF EXISTS {quoted}", ())
            cursor.execute(f"CREATE DATABASE {quoted}", ())
            cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (master, password))
            cursor.execute(
                f"GRANT {RDS_MARIADB_MASTER_PRIVILEGES} ON *.* TO %s@'%%' WITH GRANT OPTION",
                (master,),
            )
        secret_name = SEED["secret_name"]
        secretsmanager.create_secret(
            Name=secret_name,
            SecretString=json.dumps(
                {
                    "engine": "mariadb",
                    "host": mariadb_server.host,
                    "port": mariadb_server.port,
                    "username": master,
                    "password": password,
                    "dbname": database,
                }
            ),
        )
        preexisting = frozenset(accounts_before | {(master, "%")})
        yield Maria(
            mariadb_server, database, master, password, secret_name, secretsmanager, preexisting
        )
    finally:
        _mariadb_drop_everything_new(admin, accounts_before, databases_before)
        admin.close()


def _mariadb_rows(admin, statement: str, *params: Any) -> list[tuple]:
    with admin.cursor() as cursor:
        cursor.execute(statement, params)
        return list(cursor.fetchall())


def _mariadb_accounts(admin) -> set[tuple[str, str]]:
    return set(_mariadb_rows(admin, "SELECT User, Host FROM mysql.user"))


def _mariadb_databases(admin) -> set[str]:
    return {name for (name,) in _mariadb_rows(admin, "SHOW DATABASES")}


def _mariadb_drop_everything_new(admin, accounts_before: set, databases_before: set) -> None:
    """Undo the test: its sessions, databases, accounts and roles, and grants they left."""
    roles = {
        name for (name,) in _mariadb_rows(admin, "SELECT User FROM mysql.user WHERE is_role='Y'")
    }
    new_accounts = sorted(_mariadb_accounts(admin) - accounts_before)
    new_users = {name for name, _ in new_accounts}
    databases = sorted(_mariadb_databases(admin) - databases_before)
    with admin.cursor() as cursor:
        # Left-over sessions could hold GET_LOCK locks or metadata locks on the tables.
        for thread, name in _mariadb_rows(
            admin, "SELECT ID, USER FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()"
        ):
            if name in new_users:
                try:
                    cursor.execute("KILL %s", (thread,))
                except pymysql.err.OperationalError as exc:
                    if exc.args[0] != 1094:  # unknown thread: it ended meanwhile
                        raise
        for name in databases:
            cursor.execute(f"DROP DATABASE {mariadb_quote(name)}", ())
        for name, host in new_accounts:
            if name == "PUBLIC":  # created by the first GRANT ... TO PUBLIC; cannot be dropped
                continue
            if host == "" and name in roles:
                cursor.execute("DROP ROLE %s", (name,))
            else:
                cursor.execute("DROP USER %s@%s", (name, host))
        if "PUBLIC" in roles:
            cursor.execute("REVOKE ALL PRIVILEGES, GRANT OPTION FROM PUBLIC", ())
        for name in databases:
            for table in ("db", "tables_priv", "columns_priv", "procs_priv"):
                cursor.execute(f"DELETE FROM mysql.{table} WHERE Db = %s", (name,))
        # Reload the grant tables: applies the DELETEs, and ends accounts whose name had trailing
        # spaces. The CHAR columns of mysql.* store such a name trimmed, so DROP USER of the
        # trimmed name (from mysql.user) removes the row but not the account in memory.
        cursor.execute("FLUSH PRIVILEGES", ())


def spec(name: str, **keys: Any) -> tool.UserSpec:
    """A parsed user, for the pure tests: privileges as "A,B", a secret name by default."""
    keys.setdefault("secret_name", f"secret-{name}")
    if "privileges" in keys:
        keys["privileges"] = frozenset(keys["privileges"].split(","))
    return tool.UserSpec(name=name, **keys)


def user(name: str, secret: str | None = None, **keys: Any) -> dict:
    """A user entry of the event."""
    entry = {"db_user": name, **keys}
    if secret is not None or keys.get("action") != "delete":
        entry["user_secret_name"] = secret or f"secret-{name}"
    return entry
