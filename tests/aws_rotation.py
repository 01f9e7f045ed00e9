"""What AWS's multi-user rotation functions do to a user's secret and its database, step by
step, for the tests: the SecretsManagerRDSPostgreSQLRotationMultiUser and
SecretsManagerRDSMariaDBRotationMultiUser templates, as their published code and AWS's
documentation describe them (the aws-samples/aws-secrets-manager-rotation-lambdas repository,
and Secrets Manager's "Rotation by Lambda function" guide). This is our own
rendering of their behaviour, not their code: the same four steps, the same checks, the same
SQL, so that a test can rotate a secret the tool made and see what the real function would.

- createSecret: AWSPENDING = AWSCURRENT with the other username (U <-> U_clone) and a new
  password from GetRandomPassword.
- setSecret: nothing if the pending login already works; else check the usernames alternate
  and the hosts match, log in with AWSCURRENT (the confused-deputy guard), read the master
  secret from `masterarn`, check it is the same host, and as the master:
  - PostgreSQL: if the pending role is missing, CREATE ROLE ... WITH LOGIN PASSWORD and
    GRANT <current> TO <pending>; else ALTER USER ... WITH PASSWORD;
  - MariaDB: replay every SHOW GRANTS FOR <current> row as `<grant> TO <pending> IDENTIFIED
    BY <password>` (which creates the account, at host '%'), then copy the TLS requirement.
- testSecret: log in with AWSPENDING and SELECT NOW().
- finishSecret: move AWSCURRENT to the new version (Secrets Manager then clears AWSPENDING;
  with leave_pending, AWSPENDING stays on that version, as AWS says it may).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg2
import pymysql

CLONE = "_clone"


def alternate(username: str) -> str:
    return username[: -len(CLONE)] if username.endswith(CLONE) else username + CLONE


class MultiUserRotation:
    """One rotation function, for one engine, against Secrets Manager (moto here)."""

    EXCLUDED = {"postgres": ":/@\"'\\", "mariadb": "/@\"'\\"}

    def __init__(self, sm: Any, engine: str, leave_pending: bool = False):
        """leave_pending: finishSecret leaves AWSPENDING on the version it made AWSCURRENT, as
        the real templates' finishSecret does (it only moves AWSCURRENT) and as AWS says may
        happen: "the AWSPENDING staging label might be attached to the same version as the
        AWSCURRENT version" (RotateSecret's documentation)."""
        self.sm, self.engine, self.leave_pending = sm, engine, leave_pending

    def rotate(self, secret_id: str, until: str = "finishSecret") -> str:
        """All four steps, or the steps up to `until`: a rotation left in progress."""
        token = str(uuid.uuid4())
        for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
            getattr(self, step.replace("Secret", "_secret"))(secret_id, token)
            if step == until:
                break
        return token

    def create_secret(self, secret_id: str, token: str) -> None:
        current = self.value(secret_id, "AWSCURRENT")
        assert current["engine"] in {"postgres": ("postgres", "aurora-postgresql")}.get(
            self.engine, (self.engine,)
        ), f"the {self.engine} function refuses engine {current['engine']!r}"
        password = self.sm.get_random_password(
            PasswordLength=32, ExcludeCharacters=self.EXCLUDED[self.engine]
        )["RandomPassword"]
        pending = {**current, "username": alternate(current["username"]), "password": password}
        self.sm.put_secret_value(
            SecretId=secret_id,
            ClientRequestToken=token,
            SecretString=json.dumps(pending),
            VersionStages=["AWSPENDING"],
        )

    def set_secret(self, secret_id: str, token: str) -> None:
        current = self.value(secret_id, "AWSCURRENT")
        pending = self.value(secret_id, "AWSPENDING", token)
        if self.login(pending):
            return
        assert pending["username"] == alternate(current["username"]), "not the clone"
        assert pending["host"] == current["host"], "another host"
        assert self.login(current), "AWSCURRENT does not log in: refusing to rotate"
        master = self.value(current["masterarn"], "AWSCURRENT")
        assert master["host"] == current["host"], "the master secret is for another host"
        connection = self.login({**master, "dbname": current.get("dbname")})
        assert connection, "the master secret does not log in"
        try:
            if self.engine == "postgres":
                self.set_postgres(connection, current["username"], pending)
            else:
                self.set_mariadb(connection, current["username"], pending)
        finally:
            connection.close()

    def test_secret(self, secret_id: str, token: str) -> None:
        connection = self.login(self.value(secret_id, "AWSPENDING", token))
        assert connection, "AWSPENDING does not log in"
        with connection.cursor() as cursor:
            cursor.execute("SELECT NOW()")
        connection.close()

    def finish_secret(self, secret_id: str, token: str) -> None:
        stages = self.sm.describe_secret(SecretId=secret_id)["VersionIdsToStages"]
        current = next(v for v, labels in stages.items() if "AWSCURRENT" in labels)
        if current != token:
            self.sm.update_secret_version_stage(
                SecretId=secret_id,
                VersionStage="AWSCURRENT",
                MoveToVersionId=token,
                RemoveFromVersionId=current,
            )
        if not self.leave_pending:
            self.sm.update_secret_version_stage(
                SecretId=secret_id, VersionStage="AWSPENDING", RemoveFromVersionId=token
            )

    def set_postgres(self, connection: Any, current: str, pending: dict) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT quote_ident(%s), quote_ident(%s)", (pending["username"], current)
            )
            pending_name, current_name = cursor.fetchone()
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (pending["username"],))
            if not cursor.fetchall():
                cursor.execute(
                    f"CREATE ROLE {pending_name} WITH LOGIN PASSWORD %s", (pending["password"],)
                )
                cursor.execute(f"GRANT {current_name} TO {pending_name}")
            else:
                cursor.execute(
                    f"ALTER USER {pending_name} WITH PASSWORD %s", (pending["password"],)
                )
        connection.commit()

    def set_mariadb(self, connection: Any, current: str, pending: dict) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SHOW GRANTS FOR %s", (current,))
            for (grant,) in cursor.fetchall():
                replayed = grant.split(" TO ")[0].replace("%", "%%")
                cursor.execute(
                    replayed + " TO %s IDENTIFIED BY %s", (pending["username"], pending["password"])
                )
            cursor.execute("SELECT ssl_type FROM mysql.user WHERE User = %s", (current,))
            if not cursor.fetchone()[0]:
                cursor.execute("ALTER USER %s@'%%' REQUIRE NONE", (pending["username"],))
        connection.commit()

    def value(self, secret_id: str, stage: str, token: str | None = None) -> dict:
        version = {"VersionId": token} if token else {}
        response = self.sm.get_secret_value(SecretId=secret_id, VersionStage=stage, **version)
        return json.loads(response["SecretString"])

    def login(self, secret: dict) -> Any:
        """A connection as the secret's user, or None when the login is refused."""
        try:
            if self.engine == "postgres":
                return psycopg2.connect(
                    host=secret["host"],
                    port=secret.get("port", 5432),
                    user=secret["username"],
                    password=secret["password"],
                    dbname=secret.get("dbname") or "postgres",
                    sslmode="disable",
                    connect_timeout=5,
                )
            return pymysql.connect(
                host=secret["host"],
                port=int(secret.get("port", 3306)),
                user=secret["username"],
                password=secret["password"],
                database=secret.get("dbname"),
                connect_timeout=5,
            )
        except (psycopg2.OperationalError, pymysql.err.OperationalError):
            return None
