"""Shared fixtures: real PostgreSQL servers (14 to 18), moto's Secrets Manager over HTTP, and
a fresh RDS-like database per test whose master is NOT a superuser (only CREATEROLE and
CREATEDB, as on RDS)."""

from __future__ import annotations

import copy
import io
import itertools
import json
import os
import secrets as random
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import psycopg2
import pytest
import requests
from psycopg2 import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "deploy"))
sys.path.insert(0, str(ROOT))

import lambda_function as tool  # noqa: E402

from tests.servers import PG_VERSIONS, start_moto, start_postgres  # noqa: E402

PG_MAJORS = [
    int(m) for m in os.environ.get("PG_MAJORS", ",".join(map(str, PG_VERSIONS))).split(",")
]
REGION = "us-east-1"
SEED = json.loads((ROOT / "lambda-invocation" / "seed-example.json").read_text())
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
    no rotation function without Docker (tests/servers.py turns Docker off): RotateSecret
    stores the settings and never moves a staging label of its own."""
    iam = boto3.client("iam", region_name=REGION, endpoint_url=moto_url)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(RoleName="rotation", AssumeRolePolicyDocument=json.dumps(trust))
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("rotate.py", "def handler(event, context):\n    return None\n")
    function = boto3.client("lambda", region_name=REGION, endpoint_url=moto_url).create_function(
        FunctionName="rotate-db-users",
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="rotate.handler",
        Code={"ZipFile": code.getvalue()},
    )
    return function["FunctionArn"]


@pytest.fixture(scope="session", params=PG_MAJORS, ids=lambda major: f"pg{major}")
def pg_server(request, tmp_path_factory):
    server = start_postgres(request.param, tmp_path_factory.mktemp(f"pg{request.param}"))
    yield server
    server.stop()


@dataclass
class Rds:
    """One RDS-like database: its server, its master (a CREATEROLE CREATEDB non-superuser that
    owns the database) and the master secret; plus helpers to invoke the tool and to look at
    the effects the way an application would."""

    server: Any
    database: str
    master: str
    master_password: str
    secret_name: str
    sm: Any

    @property
    def major(self) -> int:
        return self.server.major

    def event(self, users: list[dict], **extra: Any) -> dict:
        return {
            "secret_name": self.secret_name,
            "database_name": self.database,
            "rds_host": self.server.host,
            "rds_port": self.server.port,
            "region": REGION,
            "db_engine": "postgres",
            "ssl_mode": "disable",
            "users": users,
            **extra,
        }

    def seed_event(self, **extra: Any) -> dict:
        """The SPEC's seed example as written, but for the address of the local server."""
        local = {"rds_host": self.server.host, "rds_port": self.server.port, "ssl_mode": "disable"}
        return {**copy.deepcopy(SEED), **local, **extra}

    def invoke(self, event: dict) -> dict:
        context = SimpleNamespace(
            aws_request_id="test", get_remaining_time_in_millis=lambda: 600_000
        )
        return tool.lambda_handler(event, context)

    def connect(self, user: str, password: str, database: str | None = None):
        return open_session(
            **self.server.dsn(user=user, password=password, dbname=database or self.database)
        )

    def superuser(self, database: str | None = None):
        return self.connect(self.server.superuser, self.server.superpassword, database)

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
        leaves that step's AWSPENDING version behind where AWS removes it (anchors-aws §2.1).
        Remove it as AWS would; left there, it is what a rotation in progress looks like."""
        for version, stages in self.versions(name).items():
            if "AWSPENDING" in stages:
                self.sm.update_secret_version_stage(
                    SecretId=name, VersionStage="AWSPENDING", RemoveFromVersionId=version
                )

    def login(self, secret_name: str):
        """Log in the way the application does: with the credentials in the user's secret."""
        value = self.secret(secret_name)
        return self.connect(value["username"], value["password"], value["dbname"])

    def run_sql(self, connection, statement: str, *params: Any) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(statement, params or None)
            return cursor.fetchall() if cursor.description else []

    def roles(self) -> set[str]:
        with self.superuser() as connection:
            rows = self.run_sql(connection, "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_'")
        return {name for (name,) in rows}

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


@pytest.fixture
def rds(pg_server, secretsmanager):
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
        as_master.cursor().execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    if pg_server.major < 15:
        # On 14 a new database's public schema belongs to the bootstrap superuser here, while
        # on RDS its master controls it (it may change its owner and revoke PUBLIC from it).
        # Give it to the master, as PostgreSQL 15+ does through pg_database_owner.
        with open_session(**pg_server.dsn(dbname=database)) as in_database:
            in_database.cursor().execute(
                sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(master))
            )
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


def user(name: str, secret: str | None = None, **keys: Any) -> dict:
    """A user entry of the event."""
    entry = {"db_user": name, **keys}
    if secret is not None or keys.get("action") != "delete":
        entry["user_secret_name"] = secret or f"secret-{name}"
    return entry
