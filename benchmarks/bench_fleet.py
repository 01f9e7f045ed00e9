"""Benchmark: a fleet of databases run through deploy/invoke.sh against Secrets Manager's quotas.

    .venv/bin/python benchmarks/bench_fleet.py [--databases 20] [--users 25,50,100]
        [--jobs 1,4,8] [--servers 4] [--tables 10] [--major 16]
        [--fleet-writes-per-second 50] [--fleet-reads-per-second 100] [--plot FILE.png]

N databases of M users each (W(M) as bench_postgres.py has it, the names prefixed by the
database: roles and accounts are server-wide), half on PostgreSQL and half on MariaDB, on
`--servers` local servers of each engine (default 4 PostgreSQL clusters and 4 MariaDB servers,
each holding 2 or 3 of the 20 databases), each event naming its server's master secret.
`deploy/invoke.sh -j J` invokes them with a stand-in `aws` on PATH that hands each payload to
a local Lambda: warm worker processes, each one execution environment running lambda_handler
one invocation at a time, as Lambda keeps them (as many as the largest J, started and loaded
before anything is timed: on AWS each environment starts on a machine of its own, where here
they would share two cores).
Secrets Manager is moto (a process of its own, secrets found by id: common.index_moto_secrets)
behind dev/quota_proxy.py, which enforces AWS's published quotas per second (writes 50 for
each group of write calls, BatchGetSecretValue and ListSecrets 100, GetSecretValue and
DescribeSecret 10,000) with token buckets and answers ThrottlingException above them.

For each J (at the largest M) and for each other M (at the largest J): a first run (every user
created) and a no-op (the same events again); then the servers' users and moto's secrets are
removed for the next first run (not timed). Each run: the wall time of invoke.sh, the floor the
quotas set (the calls of each quota's group that went through divided by its quota; the
largest), the calls and the throttled calls by kind as the proxy counted them, the failed
invocations. Then a table, the figures as JSON, and a plot drawn with matplotlib from a venv of
its own (`python3 -m venv benchmarks/.venv && benchmarks/.venv/bin/pip install -r
benchmarks/requirements-plot.txt`; without it, no plot).

invoke.sh runs the events of one server one after the other (the function holds a cluster
lock for its whole run), so at most min(J, servers) invocations run at once: with one server
per engine (`--servers 1`), two, whatever J is, and each invocation's own work outside its
writes (about a second for 100 users) adds up along each server's queue. The fleet is given
the account's whole quota (--fleet-writes-per-second 50, --fleet-reads-per-second 100): the
benchmark's account has no other caller, where a real fleet leaves room for them (invoke.sh's
defaults are 40 and 80)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import queue
import re
import secrets as random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import common
import psycopg2
import pymysql
import requests
from common import MASTER, MASTER_PASSWORD, REGION, ROOT
from psycopg2 import sql

from dev.quota_proxy import QUOTA_GROUPS, WRITES, QuotaProxy, Quotas
from dev.servers import RDS_MARIADB_MASTER_PRIVILEGES, moto_client, start_mariadb, start_postgres

INVOKE = ROOT / "deploy" / "invoke.sh"
PLOT_PYTHON = ROOT / "benchmarks" / ".venv" / "bin" / "python"
BULK_READS = {"BatchGetSecretValue", "ListSecrets"}

# The stand-in for `aws lambda invoke ... --payload fileb://P ... OUT`: it hands the event to
# the local Lambda and answers as the AWS CLI does. Standard library only, no site: it starts
# in a few milliseconds.
FAKE_AWS = """#!{python} -S
import base64, json, os, sys
from multiprocessing.connection import Client
args = sys.argv[1:]
if args[:2] == ["sts", "get-caller-identity"]:  # invoke.sh's credentials check
    print(json.dumps({{"Account": "123456789012"}}))
    sys.exit(0)
assert args[:2] == ["lambda", "invoke"], args
payload = next(a for a in args if a.startswith("fileb://"))[len("fileb://"):]
with open(payload) as file:
    event = json.load(file)
address, key = os.environ["FLEET_LAMBDA"], os.environ["FLEET_LAMBDA_KEY"].encode()
with Client(address, family="AF_UNIX", authkey=key) as connection:
    connection.send(event)
    reply = connection.recv()
with open(args[-1], "w") as file:
    json.dump(reply["body"], file)
meta = {{"StatusCode": 200, "ExecutedVersion": "$LATEST",
         "LogResult": base64.b64encode(reply["log"].encode()).decode()}}
if reply["function_error"]:
    meta["FunctionError"] = reply["function_error"]
print(json.dumps(meta))
"""


def lambda_worker(connection: Connection, environ: dict[str, str]) -> None:
    """One execution environment: the handler imported once, then one invocation at a time,
    its log captured (the last 4 KB go back, as `--log-type Tail` has them)."""
    os.environ.update(environ)
    tool = common.tool
    tool.log.setLevel("INFO")
    number = 0
    while True:
        try:
            event = connection.recv()
        except EOFError:
            return
        if event is None:  # warm(): the handler is loaded
            connection.send(None)
            continue
        number += 1
        started = time.monotonic()
        ends = started + 900  # Lambda's longest run
        context = SimpleNamespace(
            aws_request_id=f"{os.getpid()}-{number}",
            get_remaining_time_in_millis=lambda ends=ends: int((ends - time.monotonic()) * 1e3),
        )
        logged = io.StringIO()
        with contextlib.redirect_stdout(logged):
            try:
                body, error = tool.lambda_handler(event, context), None
            except Exception as failure:  # noqa: BLE001 - Lambda answers it as a function error
                body = {"errorType": type(failure).__name__, "errorMessage": str(failure)}
                error = "Unhandled"
        connection.send({"body": body, "log": logged.getvalue()[-4096:], "function_error": error})


class LocalLambda:
    """The function, served on a Unix socket: each request goes to an idle worker, or to a new
    one (a cold start) when every worker is busy."""

    def __init__(self, workdir: Path, environ: dict[str, str]):
        self.address, self.key = str(workdir / "lambda.sock"), random.token_hex(16)
        self.environ = environ
        self._listener = Listener(self.address, family="AF_UNIX", authkey=self.key.encode())
        self._idle: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self._processes: list[multiprocessing.process.BaseProcess] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: Connection) -> None:
        with client:
            event = client.recv()
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                worker = self._start_worker()
            worker.send(event)
            reply = worker.recv()
            self._idle.put(worker)
            client.send(reply)

    def _start_worker(self) -> Connection:
        ours, theirs = multiprocessing.get_context("spawn").Pipe()
        process = multiprocessing.get_context("spawn").Process(
            target=lambda_worker, args=(theirs, self.environ), daemon=True
        )
        process.start()
        self._processes.append(process)
        return ours

    def warm(self, count: int) -> None:
        """`count` environments started and loaded before anything is timed: on AWS each
        starts on a machine of its own, where here they would share two cores."""
        workers = [self._start_worker() for _ in range(count - self.environments)]
        for worker in workers:
            worker.send(None)
            worker.recv()
            self._idle.put(worker)

    @property
    def environments(self) -> int:
        return len(self._processes)

    def stop(self) -> None:
        self._listener.close()
        for process in self._processes:
            process.terminate()
            process.join(5)


def fleet_users(database: str, count: int) -> list[dict]:
    """W(count) as common.users has it, the names prefixed by the database."""
    entries = common.users(count)
    rename = {e["db_user"]: f"{database}_{e['db_user']}" for e in entries}
    for entry in entries:
        entry["db_user"] = rename[entry["db_user"]]
        entry["user_secret_name"] = f"fleet/{database}/{entry['db_user']}"
        if "grantor" in entry:
            entry["grantor"] = rename[entry["grantor"]]
    return entries


@dataclass
class Server:
    """One local server of the fleet, its master secret, and the fleet's databases on it."""

    engine: str
    server: Any
    secret: str
    databases: list[str] = field(default_factory=list)


class Fleet:
    """The servers (`--servers` of each engine), their databases and masters, moto and the
    proxy. Database i goes to PostgreSQL when i is even and to MariaDB when it is odd, on the
    engine's servers in turn."""

    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args, self.workdir = args, workdir
        self.moto, self.moto_url = common.start_moto_process()
        self.proxy = QuotaProxy(self.moto_url, Quotas()).start()
        self.servers: list[Server] = []
        try:
            self.start_servers()
        except BaseException:
            self.stop()
            raise

    def start_servers(self) -> None:
        args, workdir = self.args, self.workdir
        for k in range(args.servers):
            pg = start_postgres(args.major, workdir / f"pg{k}")
            self.servers.append(Server("postgres", pg, f"fleet-postgres{k}-master"))
            maria = start_mariadb(workdir / f"maria{k}")
            self.servers.append(Server("mariadb", maria, f"fleet-mariadb{k}-master"))
        for i in range(args.databases):
            engine_servers = [s for s in self.servers if s.engine == ("postgres", "mariadb")[i % 2]]
            engine_servers[(i // 2) % args.servers].databases.append(f"fleet{i:02}")
        for server in self.servers:
            self.make_master(server)
            self.make_databases(server)
        self.store_master_secrets()

    def stop(self) -> None:
        for server in self.servers:
            server.server.stop()
        self.proxy.stop()
        self.moto.terminate()
        self.moto.wait()

    @staticmethod
    def pg_connect(server: Any, database: str = "postgres", **login: Any) -> Any:
        connection = psycopg2.connect(**server.dsn(dbname=database, **login))
        connection.autocommit = True
        return connection

    @staticmethod
    def maria_connect(server: Any, **login: Any) -> Any:
        login = login or {"user": server.root_user, "password": server.root_password}
        return pymysql.connect(**server.connect_args(**login), autocommit=True)

    def make_master(self, fleet_server: Server) -> None:
        server = fleet_server.server
        if fleet_server.engine == "postgres":
            with contextlib.closing(self.pg_connect(server)) as admin, admin.cursor() as cursor:
                cursor.execute(
                    sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB PASSWORD {}").format(
                        sql.Identifier(MASTER), sql.Literal(MASTER_PASSWORD)
                    )
                )
            return
        with self.maria_connect(server) as root, root.cursor() as cursor:
            cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (MASTER, MASTER_PASSWORD))
            cursor.execute(
                f"GRANT {RDS_MARIADB_MASTER_PRIVILEGES} ON *.* TO %s@'%%' WITH GRANT OPTION",
                (MASTER,),
            )

    def store_master_secrets(self) -> None:
        client = moto_client("secretsmanager", self.moto_url, REGION)
        for fleet_server in self.servers:
            server = fleet_server.server
            value = {
                "engine": fleet_server.engine,
                "host": server.host,
                "port": server.port,
                "username": MASTER,
                "password": MASTER_PASSWORD,
            }
            client.create_secret(Name=fleet_server.secret, SecretString=json.dumps(value))

    def make_databases(self, fleet_server: Server) -> None:
        tables = [f"CREATE TABLE t{i} (id serial, x int)" for i in range(self.args.tables)]
        server, master = fleet_server.server, {"user": MASTER, "password": MASTER_PASSWORD}
        if fleet_server.engine == "postgres":
            for database in fleet_server.databases:
                with contextlib.closing(self.pg_connect(server, **master)) as connection:
                    connection.cursor().execute(
                        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database))
                    )
                with contextlib.closing(self.pg_connect(server, database, **master)) as connection:
                    for statement in tables:
                        connection.cursor().execute(statement)
            return
        with self.maria_connect(server, **master) as connection, connection.cursor() as cursor:
            for database in fleet_server.databases:
                cursor.execute(f"CREATE DATABASE `{database}`")
                for statement in tables:
                    cursor.execute(statement.replace("TABLE ", f"TABLE `{database}`."))

    def reset(self) -> None:
        """No users, no secrets: ready for the next first run (not timed)."""
        for fleet_server in self.servers:
            server = fleet_server.server
            if fleet_server.engine == "mariadb":
                with self.maria_connect(server) as root, root.cursor() as cursor:
                    cursor.execute("SELECT User FROM mysql.user WHERE User LIKE %s", ("fleet%",))
                    accounts = ", ".join(f"'{name}'@'%'" for (name,) in cursor.fetchall())
                    if accounts:
                        cursor.execute(f"DROP USER {accounts}")
                continue
            for database in fleet_server.databases:
                with (
                    contextlib.closing(self.pg_connect(server, database)) as admin,
                    admin.cursor() as cursor,
                ):
                    cursor.execute(
                        "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (f"{database}\\_%",)
                    )
                    # One role at a time, the grantor (the owner) last: PostgreSQL fails to
                    # drop a default ACL that several of the roles dropped at once appear in.
                    names = sorted(
                        (n for (n,) in cursor.fetchall()), key=lambda n: n.endswith("owner")
                    )
                    roles = [sql.Identifier(name) for name in names]
                    for role in roles:
                        cursor.execute(sql.SQL("DROP OWNED BY {}").format(role))
                    if roles:
                        cursor.execute(sql.SQL("DROP ROLE {}").format(sql.SQL(", ").join(roles)))
        requests.post(f"{self.moto_url}/moto-api/reset", timeout=30)
        self.store_master_secrets()

    def write_events(self, users: int) -> Path:
        folder = Path(tempfile.mkdtemp(prefix=f"events-{users}-", dir=self.workdir))
        for fleet_server in self.servers:
            server = fleet_server.server
            for database in fleet_server.databases:
                event = {
                    **common.event_for(server, fleet_server.engine, fleet_users(database, users)),
                    "secret_name": fleet_server.secret,
                    "database_name": database,
                }
                (folder / f"{database}.json").write_text(json.dumps(event))
        return folder


def run_fleet(fleet: Fleet, local: LocalLambda, events: Path, jobs: int) -> dict:
    """One `deploy/invoke.sh -j J` over the events, timed; what the proxy counted."""
    args = fleet.args
    bin_dir = fleet.workdir / "bin"
    output = Path(tempfile.mkdtemp(prefix="responses-", dir=fleet.workdir))
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "INVOKE_AWS_CLI": str(bin_dir / "aws"),
        "FLEET_LAMBDA": local.address,
        "FLEET_LAMBDA_KEY": local.key,
        "AWS_REGION": REGION,
    }
    fleet.proxy.calls.clear()
    fleet.proxy.throttled.clear()
    command = [
        "bash",
        str(INVOKE),
        "-j",
        str(jobs),
        "--secrets-writes-per-second",
        str(args.fleet_writes_per_second),
        "--secrets-reads-per-second",
        str(args.fleet_reads_per_second),
        "--output-dir",
        str(output),
        "rds-initializer",
        str(events),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    seconds = time.perf_counter() - started
    counts = fleet.proxy.counts()
    summary = re.search(r"(\d+) succeeded, (\d+) failed", done.stdout)
    reports = [json.loads(p.read_text()) for p in sorted(output.glob("*.json"))]
    failures = int(summary.group(2)) if summary else len(list(events.glob("*.json")))
    if failures:
        print(done.stdout[-4000:], done.stderr[-2000:], file=sys.stderr)
    return {
        "seconds": seconds,
        "floor": floor(counts),
        "calls": counts["calls"],
        "throttled": counts["throttled"],
        "failures": failures,
        "writes": sum(n for k, n in counts["calls"].items() if k in WRITES)
        - sum(n for k, n in counts["throttled"].items() if k in WRITES),
        "reported_throttled": sum(
            sum((r.get("stats") or {}).get("aws_throttled", {}).values()) for r in reports
        ),
        "changed": sum(bool(r.get("changed")) for r in reports),
        "invocation_seconds": sorted(r.get("duration_ms", 0) / 1000 for r in reports),
    }


def floor(counts: dict) -> float:
    """The least time the quotas allow for the calls that went through: each group's calls
    divided by its quota per second, the largest."""
    passed = {k: n - counts["throttled"].get(k, 0) for k, n in counts["calls"].items()}
    return max(
        (sum(passed.get(op, 0) for op in ops) / rate for rate, ops in QUOTA_GROUPS.values()),
        default=0.0,
    )


def measure(fleet: Fleet, local: LocalLambda, users: int, jobs: int) -> dict:
    events = fleet.write_events(users)
    result: dict[str, Any] = {
        "users": users,
        "jobs": jobs,
        "databases": fleet.args.databases,
        "servers": len(fleet.servers),
    }
    for run in ("first run", "no-op"):
        result[run] = run_fleet(fleet, local, events, jobs)
        r = result[run]
        print(
            f"{fleet.args.databases} x {users} users, J = {jobs}, {run}: {r['seconds']:.1f} s "
            f"(floor {r['floor']:.1f} s, {r['seconds'] / max(r['floor'], 1e-9):.2f}x), "
            f"{r['writes']} writes, throttled {r['throttled'] or 0}, failures {r['failures']}; "
            f"invocations {sum(r['invocation_seconds']):.1f} s in all, the longest "
            f"{max(r['invocation_seconds'], default=0):.1f} s",
            flush=True,
        )
    fleet.reset()
    return result


def kinds(calls: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(calls.items())) or "none"


def table(results: list[dict]) -> str:
    lines = [
        "| databases x users | J | run | time | quota floor | time / floor | writes | "
        "throttled calls | failures |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for run in ("first run", "no-op"):
            r = result[run]
            ratio = f"{r['seconds'] / r['floor']:.2f}" if r["floor"] else "-"
            lines.append(
                f"| {result['databases']} x {result['users']} | {result['jobs']} | {run} | "
                f"{r['seconds']:.1f} s | {r['floor']:.1f} s | {ratio} | {r['writes']} | "
                f"{sum(r['throttled'].values())} ({kinds(r['throttled'])}) | {r['failures']} |"
            )
    return "\n".join(lines)


def plot(results: list[dict], target: Path) -> None:
    """The plot, by benchmarks/plot_fleet.py in the matplotlib venv, when there is one."""
    if not PLOT_PYTHON.exists():
        print(f"(no plot: {PLOT_PYTHON} is missing; see this script's docstring)")
        return
    data = target.with_suffix(".json")
    data.write_text(json.dumps(results, indent=1))
    subprocess.run(  # noqa: S603 - our own script
        [str(PLOT_PYTHON), str(ROOT / "benchmarks" / "plot_fleet.py"), str(data), str(target)],
        check=True,
    )
    print(f"(the plot: {target}; its figures: {data})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", type=int, default=20)
    parser.add_argument("--users", default="25,50,100", help="users a database, comma-separated")
    parser.add_argument("--jobs", default="1,4,8", help="invoke.sh -j values, comma-separated")
    parser.add_argument("--tables", type=int, default=10)
    parser.add_argument("--servers", type=int, default=4, help="servers of each engine (default 4)")
    parser.add_argument("--major", type=int, default=16)
    parser.add_argument("--fleet-writes-per-second", type=float, default=50)
    parser.add_argument("--fleet-reads-per-second", type=float, default=100)
    parser.add_argument("--plot", default=str(ROOT / "benchmarks" / "fleet.png"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.users.split(",")]
    jobs = [int(j) for j in args.jobs.split(",")]
    print(common.machine(), flush=True)
    common.tool.log.setLevel("WARNING")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as work:
        workdir = Path(work)
        (workdir / "bin").mkdir()
        fake = workdir / "bin" / "aws"
        fake.write_text(FAKE_AWS.format(python=sys.executable))
        fake.chmod(0o755)
        fleet = Fleet(args, workdir)
        environ = {
            "AWS_ENDPOINT_URL": fleet.proxy.url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": REGION,
            "LOG_LEVEL": "INFO",
        }
        local = LocalLambda(workdir, environ)
        try:
            local.warm(max(jobs))
            for j in jobs:
                results.append(measure(fleet, local, max(sizes), j))
            for size in sorted(sizes)[:-1]:
                results.append(measure(fleet, local, size, max(jobs)))
        finally:
            local.stop()
            fleet.stop()
    print()
    print(table(results))
    plot(results, Path(args.plot))


if __name__ == "__main__":
    main()
