"""TLS as the function uses it, against PostgreSQL and MariaDB serving a certificate of a CA made
here for the host name "localhost": verify-full passes with that CA and host name, and refuses
another CA or another host name (127.0.0.1 is the same server, but not the certificate's name).
A CA bundle built into the zip (build.sh --ca-bundle) makes verify-full the default.

The module overrides the session's servers with TLS ones (one PostgreSQL major, the last of
PG_MAJORS); conftest's `rds` and `maria` fixtures then give an RDS-like master on them."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import zipfile

import pytest
from conftest import PG_MAJORS, tool, user

from dev.servers import start_mariadb, start_postgres
from tests.lambda_runtime import build_zip, lambda_pythons, link_runtime
from tests.tls import make_ca, make_server_cert

HOST = "localhost"  # the name in the servers' certificate
OTHER_HOST = "127.0.0.1"  # the same servers, under a name the certificate does not hold


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory, "test-ca")
    other_ca = make_ca(directory, "other-ca")
    server = make_server_cert(ca, directory, "server", [HOST])
    return {"ca": ca, "other_ca": other_ca, "server": server}


# One param each, so that test ids name the server as the session's servers do.
@pytest.fixture(scope="module", params=PG_MAJORS[-1:], ids=lambda major: f"pg{major}")
def pg_server(request, tmp_path_factory, pki):
    major = request.param
    server = start_postgres(major, tmp_path_factory.mktemp(f"pgtls{major}"), tls=pki["server"])
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["mariadb"])
def mariadb_server(tmp_path_factory, pki):
    server = start_mariadb(tmp_path_factory.mktemp("mariadbtls"), tls=pki["server"])
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_tls_settings(monkeypatch, tmp_path):
    """Start from no DB_SSL_* and no bundled CA (a path where none is)."""
    monkeypatch.delenv("DB_SSL_CA", raising=False)
    monkeypatch.delenv("DB_SSL_MODE", raising=False)
    monkeypatch.setattr(tool, "BUNDLED_CA", str(tmp_path / "absent.pem"))


def event(db, **extra):
    return db.event([user("app_rw", grant_privileges="SELECT")], **extra)


def test_verify_full_passes_with_the_right_ca_and_host_name(db, pki, monkeypatch):
    monkeypatch.setenv("DB_SSL_CA", str(pki["ca"]))

    result = db.invoke(event(db, ssl_mode="verify-full", rds_host=HOST))

    assert result["status"] == "success" and result["users"][0]["result"] == "created"
    assert db.secret("secret-app_rw")["host"] == HOST


def test_verify_full_refuses_a_certificate_of_another_ca(db, pki, monkeypatch):
    monkeypatch.setenv("DB_SSL_CA", str(pki["other_ca"]))

    with pytest.raises(tool.ApplyError, match="certificate verify failed"):
        db.invoke(event(db, ssl_mode="verify-full", rds_host=HOST))


def test_verify_full_refuses_a_host_name_the_certificate_does_not_hold(db, pki, monkeypatch):
    monkeypatch.setenv("DB_SSL_CA", str(pki["ca"]))

    with pytest.raises(tool.ApplyError) as refused:
        db.invoke(event(db, ssl_mode="verify-full", rds_host=OTHER_HOST))

    message = str(refused.value)
    assert "cannot connect" in message and OTHER_HOST in message
    # libpq: 'server certificate for "localhost" does not match host name "127.0.0.1"';
    # Python's ssl: "IP address mismatch, certificate is not valid for '127.0.0.1'".
    assert re.search(r"does not match host name|mismatch, certificate is not valid for", message)


def test_verify_full_accepts_an_rds_proxy_endpoints_chain(db, pki, monkeypatch):
    """An RDS Proxy endpoint presents a certificate of AWS Certificate Manager, which chains
    to Amazon's root CAs, not to the RDS bundle: verify-full trusts both. Here other_ca stands
    for the RDS bundle and the servers' CA for Amazon's roots."""
    monkeypatch.setenv("DB_SSL_CA", str(pki["other_ca"]))
    monkeypatch.setattr(tool, "AMAZON_ROOT_CAS", str(pki["ca"]))

    result = db.invoke(event(db, ssl_mode="verify-full", rds_host=HOST))

    assert result["status"] == "success" and result["users"][0]["result"] == "created"


def test_the_amazon_root_cas_ship_next_to_the_handler():
    context = ssl.create_default_context(cafile=tool.AMAZON_ROOT_CAS)
    names = sorted(
        dict(rdn[0] for rdn in ca["subject"])["commonName"] for ca in context.get_ca_certs()
    )
    assert names == [f"Amazon Root CA {n}" for n in range(1, 5)]


def test_require_encrypts_without_verifying_by_choice(db, pki, monkeypatch):
    monkeypatch.setenv("DB_SSL_CA", str(pki["other_ca"]))

    result = db.invoke(event(db, ssl_mode="require", rds_host=OTHER_HOST))

    assert result["status"] == "success"


# Whether the session the query runs in is encrypted: a cipher's name, or nothing.
CIPHER_QUERY = {
    "postgres": "SELECT coalesce(cipher, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    "mariadb": "SELECT variable_value FROM information_schema.session_status "
    "WHERE variable_name = 'Ssl_cipher'",
}


@pytest.mark.parametrize(("ssl_mode", "encrypted"), [("disable", False), ("require", True)])
def test_disable_means_no_tls_even_where_the_server_offers_it(db, ssl_mode, encrypted):
    """libpq's sslmode=disable; PyMySQL left to itself would try TLS wherever the server
    offers it."""
    target = tool.Target(
        engine=db.ENGINE,
        host=OTHER_HOST,
        port=db.server.port,
        database=db.database,
        master_user=db.master,
        master_password=db.master_password,
        master_arn="arn",
        ssl_mode=ssl_mode,
    )
    connection = tool.DIALECTS[db.ENGINE].connect(target)
    try:
        with connection.cursor() as cursor:
            cursor.execute(CIPHER_QUERY[db.ENGINE])
            cipher = cursor.fetchone()[0]
    finally:
        connection.close()

    assert bool(cipher) is encrypted


@pytest.fixture
def tls_required(db):
    """The server refuses connections without TLS, as RDS for PostgreSQL 15 and later does by
    default (rds.force_ssl = 1: pg_hba.conf rejects hostnossl) and RDS for MariaDB or MySQL
    with require_secure_transport = ON in its parameter group. Put back afterwards; the
    superuser's own session, opened before, stays."""
    with db.superuser() as admin:
        if db.ENGINE == "postgres":
            hba = db.server.datadir / "pg_hba.conf"
            before = hba.read_text()
            hba.write_text("hostnossl all all all reject\n" + before)
            db.run_sql(admin, "SELECT pg_reload_conf()")
            yield
            hba.write_text(before)
            db.run_sql(admin, "SELECT pg_reload_conf()")
        else:
            db.run_sql(admin, "SET GLOBAL require_secure_transport = ON")
            yield
            db.run_sql(admin, "SET GLOBAL require_secure_transport = OFF")


def test_a_server_that_requires_tls_refuses_disable_naming_ssl_mode(db, tls_required):
    with pytest.raises(tool.ApplyError, match="ssl_mode") as refused:
        db.invoke(event(db, ssl_mode="disable"))

    assert "Nothing was changed" in str(refused.value)
    assert db.invoke(event(db, ssl_mode="require", rds_host=OTHER_HOST))["status"] == "success"


def test_a_bundled_ca_makes_verify_full_the_default(db, pki, monkeypatch):
    monkeypatch.setattr(tool, "BUNDLED_CA", str(pki["ca"]))
    raw = event(db, rds_host=HOST)
    del raw["ssl_mode"]

    assert tool.parse_event(raw).ssl_mode == "verify-full"
    assert db.invoke(raw)["status"] == "success"


def test_a_bundled_ca_refuses_a_server_it_did_not_sign(db, pki, monkeypatch):
    monkeypatch.setattr(tool, "BUNDLED_CA", str(pki["other_ca"]))
    raw = event(db, rds_host=HOST)
    del raw["ssl_mode"]

    with pytest.raises(tool.ApplyError, match="certificate verify failed"):
        db.invoke(raw)


def test_db_ssl_ca_overrides_the_bundled_ca(db, pki, monkeypatch):
    monkeypatch.setattr(tool, "BUNDLED_CA", str(pki["other_ca"]))
    monkeypatch.setenv("DB_SSL_CA", str(pki["ca"]))
    raw = event(db, rds_host=HOST)
    del raw["ssl_mode"]

    assert db.invoke(raw)["status"] == "success"


def test_without_a_bundle_the_default_stays_require(monkeypatch):
    raw = {"secret_name": "s", "database_name": "d", "users": [user("u")]}

    assert tool.parse_event(raw).ssl_mode == "require"
    settings = tool.Settings.read({"DB_SSL_MODE": "disable"})
    assert tool.read_event(raw, settings=settings)[0].ssl_mode == "disable"


def test_without_tls_an_rsa_exchange_says_to_use_tls(monkeypatch):
    """PyMySQL without its rsa extra (the zip's) raises this RuntimeError when a MySQL 8
    account with caching_sha2_password logs in without TLS and the server asks for the RSA
    exchange. No MySQL 8 server runs here: the driver's error is raised as PyMySQL 1.2.4 does."""

    def without_cryptography(**_):
        raise RuntimeError(
            "'cryptography' package is required for sha256_password or "
            "caching_sha2_password auth methods"
        )

    monkeypatch.setattr(tool.pymysql, "connect", without_cryptography)
    target = tool.Target(
        engine="mysql",
        host="db.example",
        port=3306,
        database="d",
        master_user="admin",
        master_password="x",  # noqa: S106 - never used: connect is replaced
        master_arn="arn",
        ssl_mode="disable",
    )

    with pytest.raises(tool.ApplyError, match="Use TLS: ssl_mode verify-full"):
        tool.MYSQL.connect(target)
    with pytest.raises(tool.ApplyError, match="caching_sha2_password"):
        tool.MYSQL.login_works(target, "app", "pw")


def test_pymysql_raises_that_runtime_error_without_cryptography():
    """The message the handler looks for is PyMySQL's own (pinned 1.2.4)."""
    import inspect

    import pymysql._auth

    source = inspect.getsource(pymysql._auth)
    assert "'cryptography' package is required" in source
    assert pymysql.VERSION[:3] == (1, 2, 4)


# The function as Lambda runs it: the x86_64 zip built with the test CA as its bundle, on the
# newest Lambda Python here, with only boto3 beside it. No ssl_mode in the event, no DB_SSL_*:
# the bundle alone must make it verify, over the zip's own psycopg2 and PyMySQL (no RSA).
RUN_HANDLER = """
import json, sys, types
sys.path[:0] = sys.argv[1:3]
import lambda_function
context = types.SimpleNamespace(aws_request_id="zip", get_remaining_time_in_millis=lambda: 600000)
try:
    print(json.dumps(lambda_function.lambda_handler(json.load(sys.stdin), context)))
except Exception as error:
    print(json.dumps({"errorType": type(error).__name__, "errorMessage": str(error)}))
"""


@pytest.fixture(scope="module")
def zipped(tmp_path_factory, pki):
    pythons = lambda_pythons()
    assert pythons, "no Lambda Python (3.12, 3.13) here"
    version = sorted(pythons)[-1]
    work = tmp_path_factory.mktemp("zipped")
    zip_path = build_zip(work / "f.zip", "x86_64", version, "--ca-bundle", str(pki["ca"]))
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(work / "task")
    return pythons[version], work / "task", link_runtime(work / "runtime")


def run_zipped(zipped, event) -> dict:
    python, task, runtime = zipped
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DB_SSL_")}
    done = subprocess.run(
        [python, "-S", "-c", RUN_HANDLER, str(task), str(runtime)],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_zip_with_a_bundle_verifies_by_default_and_connects(db, zipped):
    raw = event(db, rds_host=HOST)
    del raw["ssl_mode"]

    result = run_zipped(zipped, raw)

    assert result.get("status") == "success", result
    assert result["users"][0]["result"] == "created"


def test_the_zip_with_a_bundle_refuses_a_host_name_the_certificate_does_not_hold(db, zipped):
    raw = event(db, rds_host=OTHER_HOST)
    del raw["ssl_mode"]

    result = run_zipped(zipped, raw)

    assert result.get("errorType") == "ApplyError", result
    assert re.search(r"does not match host name|mismatch", result["errorMessage"])
