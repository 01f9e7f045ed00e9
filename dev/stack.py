"""A local stack to try the lambda-invocation/ examples by hand: run it through dev/stack.sh.

    bash dev/stack.sh up [--pg N] [--mariadb]   start PostgreSQL N (default 16), and MariaDB if
                                                asked, each with moto as its Secrets Manager
    bash dev/stack.sh run EVENT [--dry-run]     run deploy/lambda_function.py on EVENT against it
    bash dev/stack.sh env [--mariadb]           print the environment to export
    bash dev/stack.sh status                    what runs, where
    bash dev/stack.sh down                      stop everything and delete its data

The servers are daemons that outlive the command; their state (ports, pids, passwords, data)
is under .cache/stack/, or $STACK_DIR. Each engine gets an RDS-like master, the databases and
schemas the examples use, and its own moto (the examples give the same secret names on both
engines) holding the master secrets under the examples' names and moto Lambda functions for
the rotation examples. `run` points the event at the local server: it replaces `rds_host` and
`rds_port`, and sets DB_SSL_MODE=disable.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dev.options import stack_options  # noqa: E402
from dev.servers import (  # noqa: E402
    RDS_MARIADB_MASTER_PRIVILEGES,
    PostgresServer,
    create_moto_functions,
    free_port,
    moto_client,
    pg_bindir,
    start_mariadb,
    start_postgres,
)

HANDLER = REPO / "deploy" / "lambda_function.py"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
MASTER = "master"
AIRFLOW_MASTER_SECRET = "dp-sec-db-ue1-af-activation-master_user-dev"  # noqa: S105 - a name
# mysql-users.json names its master secret by ARN. moto adds a random suffix to every ARN, but
# also finds a secret by a "partial ARN" that ends with the name: so this is the secret's name.
ORDERS_MASTER_SECRET = "orders-master-AbCdEf"  # noqa: S105 - a name
# rotation.json names this function for one user; the others use the engine's AWS function.
CUSTOM_ROTATION_FUNCTION = "dp-rotation-airflow"
AWS_ROTATION_FUNCTIONS = {
    "POSTGRES": "SecretsManagerRDSPostgreSQLRotationMultiUser",
    "MYSQL": "SecretsManagerRDSMySQLRotationMultiUser",
    "MARIADB": "SecretsManagerRDSMariaDBRotationMultiUser",
}
ENGINES = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "aurora-postgresql": "postgres",
    "mysql": "mariadb",
    "aurora-mysql": "mariadb",
    "mariadb": "mariadb",
}


class StackError(Exception):
    """Something the user can fix; the message says what."""


def say(line: str) -> None:
    print(f"stack: {line}", file=sys.stderr, flush=True)


def stack_dir() -> Path:
    return Path(os.environ.get("STACK_DIR") or REPO / ".cache" / "stack").resolve()


def state_file() -> Path:
    return stack_dir() / "state.json"


def load_state() -> dict:
    path = state_file()
    return json.loads(path.read_text()) if path.exists() else {}


def save_state(state: dict) -> None:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)  # it holds passwords
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


class Timer:
    def __init__(self) -> None:
        self.began = time.monotonic()

    def __str__(self) -> str:
        return f"{time.monotonic() - self.began:.1f} s"


# --------------------------------------------------------------------------- processes


def process_alive(pid: int | None, marker: str) -> bool:
    """Whether `pid` runs and its command line holds `marker` (a pid can be reused)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def stop_process(pid: int, marker: str, what: str, timeout: float = 30) -> None:
    if not process_alive(pid, marker):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_alive(pid, marker):
        if time.monotonic() > deadline:
            say(f"{what} did not stop within {timeout:.0f} s: killing it")
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)


# --------------------------------------------------------------------------- moto


def rotate_as_aws_does() -> None:
    """Correct two moto 5.2.5 deviations in this daemon, so that rotation.json behaves on the
    stack as on AWS (the tests work around the first with conftest's end_test_rotation):

    - RotateSecret with RotateImmediately false runs only the testSecret step of the rotation
      function, and AWS then removes that step's AWSPENDING label; moto leaves it behind.
      Left there, it is what a rotation in progress looks like, and the tool rightly refuses
      to change that user's password or rotation until it is over: every example after
      rotation.json would fail so on the stack, where no rotation ever finishes.
    - With a ScheduleExpression (and Duration), moto keeps neither, reports rotation off and
      AutomaticallyAfterDays 0, so every run would enable that rotation again.
    """
    from moto.secretsmanager.models import FakeSecret, SecretsManagerBackend

    original_to_dict = FakeSecret.to_dict

    def to_dict(self):
        result = original_to_dict(self)
        rules = getattr(self, "rules_as_given", None)
        if rules and "RotationRules" in result:
            result["RotationRules"] = dict(rules)
        return result

    FakeSecret.to_dict = to_dict

    original = SecretsManagerBackend.rotate_secret

    def rotate_secret(
        self,
        secret_id,
        client_request_token=None,
        rotation_lambda_arn=None,
        rotation_rules=None,
        rotate_immediately=True,
    ):
        secret = self.secrets[secret_id] if self._is_valid_identifier(secret_id) else None
        before = set(secret.versions) if secret is not None else set()
        result = original(
            self,
            secret_id,
            client_request_token,
            rotation_lambda_arn,
            rotation_rules,
            rotate_immediately,
        )
        if secret is not None and not rotate_immediately:
            for version_id, version in secret.versions.items():
                if version_id not in before and "AWSPENDING" in version["version_stages"]:
                    version["version_stages"].remove("AWSPENDING")
        if secret is not None and rotation_rules and "ScheduleExpression" in rotation_rules:
            secret.rules_as_given = rotation_rules
            secret.rotation_enabled = True
        elif secret is not None and rotation_rules:
            secret.rules_as_given = None
        return result

    SecretsManagerBackend.rotate_secret = rotate_secret


def serve_moto(port: int) -> None:
    """The moto daemon (started by start_moto_daemon): serve until SIGTERM."""
    from dev.servers import start_moto

    rotate_as_aws_does()
    start_moto(port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


def start_moto_daemon(name: str) -> dict:
    """Start moto in its own session, so it outlives this command; wait until it answers."""
    import requests

    port = free_port()
    log = stack_dir() / f"moto-{name}.log"
    with log.open("ab") as out:
        # S603: this very script, with a port number.
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, __file__, "serve-moto", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            # The daemon sets Lambda's config after the server starts: wait for that too.
            config = requests.get(f"{url}/moto-api/config", timeout=2).json()
            if config.get("lambda", {}).get("use_docker") is False:
                break
        except (requests.RequestException, ValueError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise StackError(f"moto did not start; its log {log}:\n{log.read_text()}")
        time.sleep(0.1)
    return {"url": url, "pid": process.pid}


def create_rotation_functions(url: str, engines: list[str]) -> dict[str, str]:
    """moto Lambda functions standing in for the rotation functions the examples need."""
    keys = [*engines, "CUSTOM"]
    names = [AWS_ROTATION_FUNCTIONS[e] for e in engines] + [CUSTOM_ROTATION_FUNCTION]
    return dict(zip(keys, create_moto_functions(url, names), strict=True))


def create_secret(url: str, name: str, value: dict) -> None:
    moto_client("secretsmanager", url, REGION).create_secret(
        Name=name, SecretString=json.dumps(value)
    )


# --------------------------------------------------------------------------- PostgreSQL


def pg_server(state: dict) -> PostgresServer:
    pg = state["postgres"]
    return PostgresServer(
        pg["host"],
        pg["port"],
        pg["major"],
        pg["superuser"],
        pg["superpassword"],
        Path(pg["datadir"]),
    )


def moto_running(part: dict | None) -> bool:
    moto = (part or {}).get("moto") or {}
    return process_alive(moto.get("pid"), "serve-moto")


def server_up(engine: str, part: dict) -> bool:
    """The engine's database server runs (from its pid file, or the pid `up` saved)."""
    if engine == "mariadb":
        return process_alive(part["pid"], part["datadir"])
    try:
        pid = int((Path(part["datadir"]) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return process_alive(pid, "postgres")


def pg_running(state: dict) -> bool:
    """PostgreSQL and its moto both run (a stack half up is restarted by `up`)."""
    pg = state.get("postgres")
    return bool(pg) and moto_running(pg) and server_up("postgres", pg)


def pg_run(server: PostgresServer, statements: list, **dsn) -> None:
    import psycopg2

    connection = psycopg2.connect(**server.dsn(**dsn))
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        connection.close()


def up_postgres(major: int) -> dict:
    from psycopg2 import sql

    timer = Timer()
    say(f"starting PostgreSQL {major} ...")
    server = start_postgres(major, stack_dir() / "postgres")
    say(f"PostgreSQL {major} on {server.host}:{server.port} ({timer})")
    timer = Timer()
    password = secrets.token_urlsafe(18)
    master = sql.Identifier(MASTER)
    # What an RDS master is: LOGIN CREATEROLE CREATEDB, not a superuser; it creates and owns
    # the database (tests/conftest.py's `rds` fixture makes the same).
    pg_run(
        server,
        [
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB PASSWORD {}").format(
                master, sql.Literal(password)
            )
        ],
    )
    # RDS's role for IAM database authentication (iam-user.json declares an IAM user), made by
    # the bootstrap superuser as rdsadmin makes it; from 16 on, granting it takes ADMIN OPTION.
    iam_role = ["CREATE ROLE rds_iam"]
    if major >= 16:
        iam_role.append(
            sql.SQL("GRANT rds_iam TO {} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE").format(
                master
            )
        )
    pg_run(server, iam_role)
    as_master = {"user": MASTER, "password": password}
    pg_run(server, ["CREATE DATABASE airflow"], **as_master)
    if major < 15:
        # On 14 a new database's public schema belongs to the bootstrap superuser, while on RDS
        # the master controls it: give it to the master, as 15+ does (pg_database_owner).
        pg_run(
            server,
            [sql.SQL("ALTER SCHEMA public OWNER TO {}").format(master)],
            dbname="airflow",
        )
    # optional-keys.json manages the schema reporting too (the tool creates no schema), and
    # deletes airflow-legacy-etl, handing what it owns to airflow-rw-ddl: here is one such user,
    # made by the master as on RDS, owning a table.
    pg_run(
        server,
        [
            "CREATE SCHEMA reporting",
            'CREATE ROLE "airflow-legacy-etl" LOGIN',
            'GRANT USAGE, CREATE ON SCHEMA reporting TO "airflow-legacy-etl"',
        ],
        dbname="airflow",
        **as_master,
    )
    pg_run(
        server,
        [
            "CREATE TABLE reporting.legacy_export (id integer PRIMARY KEY, payload text)",
            'ALTER TABLE reporting.legacy_export OWNER TO "airflow-legacy-etl"',
        ],
        dbname="airflow",
    )
    say(
        f"master {MASTER!r} (LOGIN CREATEROLE CREATEDB, not a superuser), database airflow with"
        f" schemas public and reporting, role airflow-legacy-etl owning a table ({timer})"
    )
    return {
        "major": major,
        "host": server.host,
        "port": server.port,
        "superuser": server.superuser,
        "superpassword": server.superpassword,
        "datadir": str(server.datadir),
        "bindir": str(pg_bindir(major)),
        "master": MASTER,
        "master_password": password,
    }


def seed_postgres_secrets(pg: dict) -> None:
    timer = Timer()
    moto = start_moto_daemon("postgres")
    pg["moto"] = moto
    create_secret(
        moto["url"],
        AIRFLOW_MASTER_SECRET,
        {
            "engine": "postgres",
            "host": pg["host"],
            "port": pg["port"],
            "username": MASTER,
            "password": pg["master_password"],
            "dbname": "airflow",
        },
    )
    pg["rotation_arns"] = create_rotation_functions(moto["url"], ["POSTGRES"])
    say(
        f"moto for PostgreSQL on {moto['url']}: master secret {AIRFLOW_MASTER_SECRET},"
        f" rotation functions {', '.join(sorted(pg['rotation_arns']))} ({timer})"
    )


# --------------------------------------------------------------------------- MariaDB


def mariadb_running(state: dict) -> bool:
    """MariaDB and its moto both run."""
    maria = state.get("mariadb")
    return bool(maria) and moto_running(maria) and server_up("mariadb", maria)


def up_mariadb() -> dict:
    import pymysql

    timer = Timer()
    say("starting MariaDB ...")
    server = start_mariadb(stack_dir() / "mariadb")
    say(f"MariaDB {server.version} on {server.host}:{server.port} ({timer})")
    timer = Timer()
    password = secrets.token_urlsafe(18)
    root = pymysql.connect(**server.connect_args(autocommit=True))
    with root, root.cursor() as cursor:
        # Params always passed: PyMySQL turns %% into % only when it has params.
        cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (MASTER, password))
        cursor.execute(
            f"GRANT {RDS_MARIADB_MASTER_PRIVILEGES} ON *.* TO %s@'%%' WITH GRANT OPTION",
            (MASTER,),
        )
        # mysql-users.json deletes orders_legacy@'10.20.%': one to delete.
        cursor.execute(
            "CREATE USER 'orders_legacy'@'10.20.%%' IDENTIFIED BY %s", (secrets.token_urlsafe(18),)
        )
        cursor.execute("GRANT SELECT ON `orders`.* TO 'orders_legacy'@'10.20.%%'", ())
    master = pymysql.connect(**server.connect_args(user=MASTER, password=password, autocommit=True))
    with master, master.cursor() as cursor:
        cursor.execute("CREATE DATABASE airflow", ())
        cursor.execute("CREATE DATABASE orders", ())
    say(
        f"master '{MASTER}'@'%' (the RDS master's grants, no SUPER), databases airflow and"
        f" orders, account orders_legacy ({timer})"
    )
    return {
        "host": server.host,
        "port": server.port,
        "version": server.version,
        "pid": server.process.pid,
        "datadir": str(server.datadir),
        "root_password": server.root_password,
        "master": MASTER,
        "master_password": password,
    }


def seed_mariadb_secrets(maria: dict) -> None:
    timer = Timer()
    moto = start_moto_daemon("mariadb")
    maria["moto"] = moto
    common = {
        "host": maria["host"],
        "port": maria["port"],
        "username": MASTER,
        "password": maria["master_password"],
    }
    create_secret(
        moto["url"], AIRFLOW_MASTER_SECRET, {"engine": "mariadb", **common, "dbname": "airflow"}
    )
    create_secret(
        moto["url"], ORDERS_MASTER_SECRET, {"engine": "mysql", **common, "dbname": "orders"}
    )
    maria["rotation_arns"] = create_rotation_functions(moto["url"], ["MYSQL", "MARIADB"])
    say(
        f"moto for MariaDB on {moto['url']}: master secrets {AIRFLOW_MASTER_SECRET} and"
        f" {ORDERS_MASTER_SECRET} ({timer})"
    )


# --------------------------------------------------------------------------- commands


def cmd_up(args: argparse.Namespace) -> int:
    state = load_state()
    timer = Timer()
    stack_dir().mkdir(parents=True, exist_ok=True)
    if pg_running(state):
        if args.pg != state["postgres"]["major"]:
            raise StackError(
                f"PostgreSQL {state['postgres']['major']} is already up; "
                "run `bash dev/stack.sh down` first to switch majors"
            )
        say(f"PostgreSQL {args.pg} already up on port {state['postgres']['port']}")
    else:
        stop_leftovers(state, "postgres")
        state["postgres"] = up_postgres(args.pg)
        save_state(state)
        seed_postgres_secrets(state["postgres"])
        save_state(state)
    if args.mariadb:
        if mariadb_running(state):
            say(f"MariaDB already up on port {state['mariadb']['port']}")
        else:
            stop_leftovers(state, "mariadb")
            state["mariadb"] = up_mariadb()
            save_state(state)
            seed_mariadb_secrets(state["mariadb"])
            save_state(state)
    say(f"up in {timer}. Next: bash dev/stack.sh run lambda-invocation/seed-example.json")
    print_env(state, "mariadb" if args.mariadb and not pg_running(state) else "postgres")
    return 0


def stop_leftovers(state: dict, engine: str) -> None:
    """Stop what is left of an engine whose server is down (its moto, say), and its data."""
    part = state.pop(engine, None)
    if part:
        stop_engine(engine, part)


def stop_engine(engine: str, part: dict) -> None:
    moto = part.get("moto")
    if moto:
        stop_process(moto["pid"], "serve-moto", f"moto for {engine}")
    if engine == "postgres":
        if server_up(engine, part):
            pg_server({"postgres": part}).stop()
        shutil.rmtree(Path(part["datadir"]).parent, ignore_errors=True)
    else:
        stop_process(part["pid"], part["datadir"], "MariaDB")
        shutil.rmtree(Path(part["datadir"]).parent, ignore_errors=True)


def cmd_down(_args: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        say(f"nothing to stop ({stack_dir()} has no state)")
        return 0
    timer = Timer()
    for engine in ("postgres", "mariadb"):
        if engine in state:
            stop_engine(engine, state[engine])
            say(f"{engine} and its moto stopped, data deleted")
    shutil.rmtree(stack_dir(), ignore_errors=True)
    say(f"down in {timer}")
    return 0


def cmd_status(_args: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        print("stack: down")
        return 3
    healthy = True
    for engine in ("postgres", "mariadb"):
        part = state.get(engine)
        if not part:
            continue
        label = f"PostgreSQL {part['major']}" if engine == "postgres" else "MariaDB"
        moto = part.get("moto") or {}
        moto_up = moto_running(part)
        db_up = server_up(engine, part)
        healthy = healthy and moto_up and db_up
        print(
            f"{label}: {'up' if db_up else 'DOWN'} on {part['host']}:{part['port']}"
            f" (master {part['master']!r}); moto {'up' if moto_up else 'DOWN'}"
            f" on {moto.get('url', '-')}"
        )
    print(f"state: {state_file()}")
    return 0 if healthy else 1


def environment(part: dict, engine: str) -> dict[str, str]:
    """What the handler needs to run against the stack."""
    arns = part["rotation_arns"]
    env = {
        "AWS_ENDPOINT_URL": part["moto"]["url"],
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "DB_SSL_MODE": "disable",
    }
    for key in ("POSTGRES", "MYSQL", "MARIADB"):
        if key in arns:
            env[f"ROTATION_LAMBDA_ARN_{key}"] = arns[key]
    return env


# Variables that would send the handler elsewhere than moto.
UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_SECRETS_MANAGER")


def print_env(state: dict, engine: str) -> None:
    part = state.get(engine)
    if not part:
        raise StackError(
            f"{engine} is not up: run `bash dev/stack.sh up"
            + (" --mariadb`" if engine == "mariadb" else "`")
        )
    print(
        f'# the local stack, {engine}: eval "$(bash dev/stack.sh env'
        + (" --mariadb" if engine == "mariadb" else "")
        + ')"'
    )
    print(f"unset {' '.join(UNSET)}")
    for name, value in environment(part, engine).items():
        print(f"export {name}={value}")
    host, port, pw = part["host"], part["port"], part["master_password"]
    if engine == "postgres":
        psql = Path(part["bindir"]) / "psql"
        print(f"# master: PGPASSWORD='{pw}' {psql} -h {host} -p {port} -U {MASTER} airflow")
        print(
            f"# superuser: PGPASSWORD='{part['superpassword']}' {psql} -h {host} -p {port}"
            f" -U {part['superuser']} airflow"
        )
    else:
        print(f"# master: mariadb -h {host} -P {port} -u {MASTER} -p'{pw}' airflow")
        print(f"# root: mariadb -h {host} -P {port} -u root -p'{part['root_password']}'")
    print("# events must point at the local server: bash dev/stack.sh run EVENT does that")


def cmd_env(args: argparse.Namespace) -> int:
    print_env(load_state(), "mariadb" if args.mariadb else "postgres")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    path = Path(args.event)
    try:
        event = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StackError(f"cannot read the event {path}: {exc}") from None
    db_engine = str(event.get("db_engine", "postgres")).lower()
    engine = ENGINES.get(db_engine)
    if engine is None:
        raise StackError(f"{path}: db_engine {db_engine!r} is none of {', '.join(ENGINES)}")
    state = load_state()
    running = pg_running if engine == "postgres" else mariadb_running
    if not running(state):
        flag = " --mariadb" if engine == "mariadb" else ""
        raise StackError(
            f"{engine} or its moto is not up: run `bash dev/stack.sh up{flag}` first"
            " (it restarts what is down)"
        )
    part = state[engine]
    local = dict(event, rds_host=part["host"], rds_port=part["port"])
    events = stack_dir() / "events"
    events.mkdir(exist_ok=True)
    local_path = events / path.name
    local_path.write_text(json.dumps(local, indent=2) + "\n")
    label = f"PostgreSQL {part['major']}" if engine == "postgres" else f"MariaDB {part['version']}"
    note = " (MySQL 8 cannot run here; MariaDB speaks its protocol)" if "mysql" in db_engine else ""
    shown = local_path.relative_to(REPO) if local_path.is_relative_to(REPO) else local_path
    say(
        f"{path} on {label} at {part['host']}:{part['port']}{note}: rds_host and rds_port"
        f" replaced in {shown}"
    )
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(environment(part, engine))
    command = [sys.executable, str(HANDLER), str(local_path), *args.handler_args]
    sys.stdout.flush()
    os.execve(sys.executable, command, env)  # noqa: S606 - this repository's own handler


def main(argv: list[str] | None = None) -> int:
    args = stack_options(argv)
    command = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "env": cmd_env, "run": cmd_run}
    try:
        return command[args.command](args)
    except StackError as exc:
        say(f"ERROR: {exc}")
        return 2


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve-moto"]:  # the daemon start_moto_daemon starts
        serve_moto(int(sys.argv[2]))
    sys.exit(main())
