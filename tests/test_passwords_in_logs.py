"""No password reaches a server in plain text, whatever its characters: PostgreSQL gets the
SCRAM verifier computed as libpq computes it (SASLprep included), MariaDB the
mysql_native_password hash. Each server here logs every statement (PostgreSQL's
log_statement = all, MariaDB's general log), and the logs are searched for every password."""

from __future__ import annotations

import base64
import json

import psycopg2
import pymysql
import pytest
from conftest import PG_MAJORS, open_session, tool, user

from dev.servers import start_mariadb, start_postgres

# Passwords an existing secret may hold, which the tool adopts: SASLprep leaves the first as
# it is, maps or normalizes the second and third, refuses the next two (unassigned in Unicode
# 3.2; mixed directions), so that libpq and the server use their raw bytes; the last is
# right-to-left only, which SASLprep accepts.
PASSWORDS = {
    "adopt-plain": "Grüße-ñ-€-Größe-2024",
    "adopt-nfkc": "pass\u2168word\u00ad\u00a0x",
    "adopt-fullwidth": "ＡＢＣ１２３ｘｙｚ",
    "adopt-emoji": "emoji\U0001f600pw",
    "adopt-bidi": "\u0627abc\u0628",
    "adopt-rtl": "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
}


@pytest.fixture(scope="module", params=PG_MAJORS, ids=lambda major: f"pg{major}")
def pg_server(request, tmp_path_factory):
    """This module's own PostgreSQL, logging every statement (overrides conftest's)."""
    workdir = tmp_path_factory.mktemp(f"pglog{request.param}")
    server = start_postgres(request.param, workdir, settings={"log_statement": "'all'"})
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["mariadb"])  # one param: the ids say mariadb
def mariadb_server(tmp_path_factory):
    """This module's own MariaDB, with its general log on (overrides conftest's)."""
    workdir = tmp_path_factory.mktemp("mariadblog")
    server = start_mariadb(
        workdir, options=("--general-log=1", f"--general-log-file={workdir / 'general.log'}")
    )
    server.general_log = workdir / "general.log"  # type: ignore[attr-defined]
    yield server
    server.stop()


def every_password(sm, secret_names: list[str]) -> set[str]:
    """Every password any version of these secrets ever held."""
    found = set()
    for name in secret_names:
        versions = sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)["Versions"]
        for version in versions:
            value = sm.get_secret_value(SecretId=name, VersionId=version["VersionId"])
            found.add(json.loads(value["SecretString"])["password"])
    return found


def prefill(db, names: dict[str, str]) -> None:
    for name, password in names.items():
        db.sm.create_secret(
            Name=f"secret-{name}", SecretString=json.dumps({"username": name, "password": password})
        )


def runs_with_every_kind_of_password(db) -> list[str]:
    """Create users with new and adopted (non-ASCII) passwords, re-run, then update
    the new one: returns the secrets."""
    prefill(db, PASSWORDS)
    names = ["fresh-ascii", *PASSWORDS]
    users = [user(name, grant_privileges="SELECT") for name in names]
    assert db.invoke(db.event(users))["changed"] is True
    assert db.invoke(db.event(users))["changed"] is False
    updates = [user(names[0], grant_privileges="SELECT", action="update")]
    db.invoke(db.event(updates))
    return [f"secret-{name}" for name in names]


def assert_absent(log: bytes, passwords: set[str]) -> None:
    assert passwords
    for password in passwords:
        assert password.encode() not in log, f"a password is in the server log: {password!r}"


def test_the_verifier_is_the_one_the_server_computes_from_the_password_itself(rds):
    """The server hashes a plaintext password with its own SASLprep: the tool's verifier, with
    the same salt and iteration count, must be identical, byte for byte."""
    candidates = [*PASSWORDS.values(), "ascii-Only_123", "\u00aa\u2075x", "a\u200bb"]
    with rds.superuser() as admin, admin.cursor() as cursor:
        cursor.execute("SET password_encryption = 'scram-sha-256'")
        cursor.execute("SET log_statement = 'none'")  # this test alone sends plaintext
        for number, password in enumerate(candidates):
            role = f"hash_check_{number}"
            cursor.execute(f"CREATE ROLE {role} PASSWORD %s", (password,))
            cursor.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
            stored = cursor.fetchone()[0]
            iterations, salt = stored.split("$")[1].split(":")
            mine = tool.scram_verifier(password, int(iterations), base64.b64decode(salt))
            assert mine == stored, password
            cursor.execute(f"DROP ROLE {role}")


def test_postgres_statement_log_holds_no_password_and_non_ascii_passwords_log_in(rds):
    log_file = rds.server.logfile
    start = log_file.stat().st_size
    secrets = runs_with_every_kind_of_password(rds)
    log = log_file.read_bytes()[start:]
    assert b"CREATE ROLE" in log and b"SCRAM-SHA-256$" in log  # the log does log statements
    assert_absent(log, every_password(rds.sm, secrets))
    for name, password in PASSWORDS.items():
        assert rds.secret(f"secret-{name}")["password"] == password  # adopted as it was
        with open_session(**rds.server.dsn(user=name, password=password, dbname=rds.database)):
            pass  # libpq SASLprep'ed it on this side: the verifier matches
        with pytest.raises(psycopg2.OperationalError, match="authentication failed"):
            open_session(**rds.server.dsn(user=name, password=password + "x"))


def test_mariadb_general_log_holds_no_password_and_non_ascii_passwords_log_in(maria):
    log_file = maria.server.general_log
    start = log_file.stat().st_size
    secrets = runs_with_every_kind_of_password(maria)
    log = log_file.read_bytes()[start:]
    assert b"CREATE USER" in log and b"IDENTIFIED BY PASSWORD" in log
    assert_absent(log, every_password(maria.sm, secrets))
    for name, password in PASSWORDS.items():
        # The hash is of the UTF-8 bytes, what a UTF-8 client sends (PyMySQL would send a str
        # as latin-1, so it is given the bytes).
        pymysql.connect(**maria.server.connect_args(user=name, password=password.encode())).close()


def test_adopted_non_ascii_passwords_pass_the_tools_own_login_check_on_mariadb(maria):
    """verify_logins logs in as each user: the password goes as UTF-8, as the hash was made."""
    prefill(maria, PASSWORDS)
    users = [user(name, grant_privileges="SELECT") for name in PASSWORDS]
    maria.invoke(maria.event(users))

    report = maria.invoke(maria.event(users, verify_logins=True))

    assert report["changed"] is False
    for name, password in PASSWORDS.items():
        assert maria.secret(f"secret-{name}")["password"] == password
