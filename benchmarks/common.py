"""What bench_postgres.py and bench_mysql.py share: the event's users, the invocation, the
master secret, the four runs and what is measured of each, the floor, the per-size child
processes, the result tables and the growth exponents. Each script keeps what is its
engine's own (starting the server, the RDS-like master and the tables, counting the
driver's round trips, the naive way) and hands it to main().

Each size runs in a process of its own (a fresh server, a fresh moto, a fresh peak memory),
with moto in yet another process, as AWS is: moto's work is not the tool's, in time or in
memory. The servers live in temporary directories of their own (never pytest's basetemp).

Importing this module puts deploy/ and the repository on sys.path, so a script imports it
before dev.servers (isort keeps that order: this module sorts as third-party, dev as
first-party)."""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "deploy"), str(ROOT)]

import lambda_function as tool  # noqa: E402

MASTER, MASTER_PASSWORD, DATABASE = "master", "master-password-for-bench", "bench"
MASTER_SECRET, REGION = "bench-master", "us-east-1"
DML, RO = "SELECT, INSERT, UPDATE, DELETE", "SELECT"
SIZES = (100, 500, 1000, 2000, 5000)
RUNS = ("first run", "no-op", "update all", "delete all")

# Round trips the engine script counts at the driver: statements (and the BEGIN and COMMIT
# psycopg2 sends by itself), and connections opened (each a few more: startup, auth).
COUNTS: dict[str, int] = defaultdict(int)
_counting = threading.Lock()


def count(key: str, n: int = 1) -> None:
    with _counting:
        COUNTS[key] += n


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark takes; a script adds its own before parsing."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--users", default=",".join(map(str, SIZES)), help="sizes, comma-separated")
    parser.add_argument("--tables", type=int, default=50)
    parser.add_argument(
        "--writes-per-second",
        type=float,
        default=1000,
        help="SECRETS_WRITES_PER_SECOND for the tool (moto is local; the default is 40)",
    )
    parser.add_argument(
        "--reads-per-second",
        type=float,
        default=1000,
        help="SECRETS_READS_PER_SECOND for the tool (moto has no quota; the default is 80)",
    )
    parser.add_argument("--naive", action="store_true", help="also the naive way, per size")
    parser.add_argument(
        "--shape",
        choices=("grants", "login-only"),
        default="grants",
        help="the users: granted by a DDL owner on every table (default), or login-only",
    )
    parser.add_argument(
        "--refused-above",
        type=int,
        default=0,
        help="sizes above this are events the tool refuses: measure the refusal instead",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: one size
    return parser


def users(count: int, action: str = "create", shape: str = "grants") -> list[dict]:
    """One DDL owner; the others alternate read-write and read-only, all granted by it. The
    shape "login-only": users with no table privileges and no grantor (on PostgreSQL, CONNECT
    on the database and USAGE on the schema), the shape of more users than a PostgreSQL table
    can have grantees."""
    if shape == "login-only":
        return [
            {"db_user": f"user{i:04}", "user_secret_name": f"bench-user{i:04}", "action": action}
            for i in range(count)
        ]
    entries = [
        {
            "db_user": "owner",
            "user_secret_name": "bench-owner",
            "grant_ddl": True,
            "grant_privileges": "SELECT,INSERT,UPDATE,DELETE",
            "action": action,
        }
    ]
    for i in range(1, count):
        privileges = "SELECT,INSERT,UPDATE,DELETE" if i % 2 else "SELECT"
        entries.append(
            {
                "db_user": f"user{i:04}",
                "user_secret_name": f"bench-user{i:04}",
                "grant_privileges": privileges,
                "grantor": "owner",
                "action": action,
            }
        )
    return entries


def runs(count: int, shape: str = "grants") -> list[tuple[str, list[dict]]]:
    """Create all, the same again (nothing to do), a new password for all, delete all."""
    every = users(count, shape=shape)
    return [
        ("first run", every),
        ("no-op", every),
        ("update all", [dict(u, action="update") for u in every]),
        ("delete all", [dict(u, action="delete") for u in every]),
    ]


def index_moto_secrets() -> None:
    """moto 5.2 finds a secret by scanning every secret it holds (SecretsStore compares each
    one's name and ARN), so each call costs O(secrets) and a run of N users O(N^2) in moto,
    not in the tool: at 2,000 users most of an "update all" run was moto scanning. AWS looks
    a secret up by its id. Here a name is looked up directly, an ARN through an index, and
    a partial ARN as moto reads one: the same answers, in O(1). Nothing iterates over the live
    store (the index is rebuilt from a copy, taken in one step under the GIL; ListSecrets
    walks a copy too), as moto's server threads add secrets meanwhile: its own scans then
    failed with "dictionary changed size during iteration", answered HTTP 500, and botocore
    tried again."""
    from moto.secretsmanager.models import SecretsStore
    from moto.secretsmanager.utils import get_secret_name_from_partial_arn

    def name_of(store: Any, key: str) -> str | None:
        if dict.__contains__(store, key):
            return key
        if key.startswith("arn:"):
            arns = store.__dict__.setdefault("arns", {})
            name = arns.get(key)
            if name is None or not dict.__contains__(store, name):
                snapshot = list(dict.values(store))
                arns.clear()
                arns.update((secret.arn, secret.name) for secret in snapshot)
                name = arns.get(key)
            found = dict.get(store, name) if name is not None else None
            if found is not None and found.arn == key:
                return name
        partial = get_secret_name_from_partial_arn(key)
        return partial if dict.__contains__(store, partial) else None

    def get(store: Any, key: str) -> Any:
        name = name_of(store, key)
        return dict.get(store, name) if name is not None else None

    def getitem(store: Any, key: str) -> Any:
        found = get(store, key)
        if found is None:
            raise KeyError(key)
        return found

    def contains(store: Any, key: str) -> bool:
        return get(store, key) is not None

    SecretsStore.get, SecretsStore.__getitem__ = get, getitem
    SecretsStore.__contains__ = contains
    SecretsStore.values = lambda store: list(dict.values(store))


def start_moto_process() -> tuple[subprocess.Popen, str]:
    """moto's server (with the tests' correction of its AWSCURRENT reads, and secrets found
    by id: index_moto_secrets) in a process of its own; returns the process and its URL."""
    code = (
        "import sys, time; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/benchmarks']; "
        "import common; common.index_moto_secrets(); "
        "from dev.servers import start_moto; server, url = start_moto(); "
        "print(url, flush=True); time.sleep(86400)"
    )
    process = subprocess.Popen(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-c", code, str(ROOT)], stdout=subprocess.PIPE, text=True
    )
    return process, process.stdout.readline().strip() if process.stdout else ""


def event_for(server, engine: str, entries: list[dict]) -> dict:
    return {
        "secret_name": MASTER_SECRET,
        "database_name": DATABASE,
        "rds_host": server.host,
        "rds_port": server.port,
        "db_engine": engine,
        "ssl_mode": "disable",
        "region": REGION,
        "users": entries,
    }


def store_master_secret(server, engine: str) -> None:
    """The master secret the event names, in moto's Secrets Manager."""
    value = {
        "engine": engine,
        "host": server.host,
        "port": server.port,
        "username": MASTER,
        "password": MASTER_PASSWORD,
    }
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secrets.create_secret(Name=MASTER_SECRET, SecretString=json.dumps(value))


def invoke(server, engine: str, entries: list[dict], **extra: Any) -> tuple[float, dict]:
    event = {**event_for(server, engine, entries), **extra}
    context = SimpleNamespace(aws_request_id="bench", get_remaining_time_in_millis=lambda: 900_000)
    started = time.perf_counter()
    report = tool.lambda_handler(event, context)
    return time.perf_counter() - started, report


def refusal(server, engine: str, entries: list[dict]) -> dict:
    """An event the tool refuses up front (PostgreSQL's 2,200 grantees a table): how long the
    refusal took, what it said, and the AWS calls it made (none may write)."""
    clients: list[Any] = []
    make = tool.SecretsManager.__init__

    def keep(self: Any, region: str | None, settings: Any = None, **paces: Any) -> None:
        make(self, region, settings, **paces)
        clients.append(self)

    tool.SecretsManager.__init__ = keep
    started = time.perf_counter()
    try:
        invoke(server, engine, entries)
    except tool.InvalidEvent as error:
        return {
            "seconds": time.perf_counter() - started,
            "said": str(error).split(": ", 1)[1][:160],
            "aws_calls": dict(clients[0].calls) if clients else {},
        }
    finally:
        tool.SecretsManager.__init__ = make
    raise RuntimeError(f"the tool did not refuse {len(entries)} users")


def floor(server, engine: str, entries: list[dict]) -> float:
    """What a no-op run cannot do without, one after the other in this process: the master
    secret, a connection, the tool's catalog read, and BatchGetSecretValue of every user
    secret (20 a call, 16 at a time), with a fresh client as each invocation has."""
    raw = event_for(server, engine, entries)
    event, _ = tool.read_event(raw)
    started = time.perf_counter()
    client = boto3.client("secretsmanager", region_name=REGION)
    response = client.get_secret_value(SecretId=MASTER_SECRET)
    target, _ = tool.resolve_target(event, json.loads(response["SecretString"]), response["ARN"])
    if target is None:
        raise RuntimeError("the master secret names no target")
    connection = target.dialect.connect(target)
    try:
        target.dialect.read_state(
            connection, target, tool.bind_engine(event, target.dialect), tool.Deadline(None)
        )
    finally:
        connection.close()
    names = [u["user_secret_name"] for u in entries]
    batches = [names[i : i + 20] for i in range(0, len(names), 20)]
    with ThreadPoolExecutor(16) as pool:
        for response in pool.map(lambda b: client.batch_get_secret_value(SecretIdList=b), batches):
            if response.get("Errors"):
                raise RuntimeError(f"could not read {response['Errors']}")
    return time.perf_counter() - started


def measure_one(
    args: argparse.Namespace,
    *,
    engine: str,
    start: Callable[[Path], Any],
    title: Callable[[Any], str],
    prepare: Callable[[Any, int], None],
    count_round_trips: Callable[[], None],
    naive: Callable[[Any, int], tuple[float, int]] | None,
) -> dict:
    """One size, in this process: every run, the floor beside the no-op, the peak memory; or,
    past `--refused-above`, the tool's refusal of the event."""
    size = args.one
    tool.log.setLevel("WARNING")
    moto, url = start_moto_process()
    dummy = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}  # moto takes any
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        SECRETS_WRITES_PER_SECOND=str(args.writes_per_second),
        SECRETS_READS_PER_SECOND=str(args.reads_per_second),
        **dummy,
    )
    result: dict[str, Any] = {"users": size, "runs": {}}
    with tempfile.TemporaryDirectory(prefix=f"bench-{engine}-{size}-") as workdir:
        server = start(Path(workdir))
        try:
            prepare(server, args.tables)
            store_master_secret(server, engine)
            result["server"] = title(server)
            count_round_trips()
            if args.refused_above and size > args.refused_above:
                result["refused"] = refusal(server, engine, users(size, shape=args.shape))
            else:
                result.update(measure_runs(server, engine, size, args.shape))
            if naive:
                result["naive"] = naive(server, size)
        finally:
            server.stop()
            moto.terminate()
            moto.wait()
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def measure_runs(server, engine: str, size: int, shape: str) -> dict:
    """The four runs, each measured; the floor beside the no-op. Before them, a dry run of
    the first, whose report (with its SQL) is the largest: the size of each report's JSON
    against Lambda's 6 MB response limit."""
    measured: dict[str, Any] = {"runs": {}, "report_bytes": {}}
    dry = invoke(server, engine, runs(size, shape)[0][1], dry_run=True)[1]
    measured["report_bytes"]["dry run"] = len(json.dumps(dry))
    for name, entries in runs(size, shape):
        gc.collect()
        COUNTS.clear()
        seconds, report = invoke(server, engine, entries)
        counted = dict(COUNTS)  # of this one invocation
        if name == "no-op":
            # The no-op and the floor take turns, five times each, and each keeps its best:
            # the machine's load (shared, 2 cores) hits both alike.
            floors = []
            for _ in range(5):
                floors.append(floor(server, engine, entries))
                seconds = min(seconds, invoke(server, engine, entries)[0])
            measured["floor"] = min(floors)
        stats = report["stats"]
        measured["report_bytes"][name] = len(json.dumps(report))
        measured["runs"][name] = {
            "seconds": seconds,
            "statements": stats["sql_statements"],
            "catalog_queries": stats["catalog_queries"],
            "round_trips": counted.get("round_trips", 0),
            "connections": counted.get("connections", 0),
            "aws_calls": stats["aws_calls"],
            "changed": sum(u["result"] != "unchanged" for u in report["users"]),
        }
    return measured


def exponent(points: list[tuple[int, float]]) -> float:
    """The least-squares slope of log(time) on log(users): 1.0 is linear."""
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(t) for _, t in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return (
        f"{os.cpu_count()} CPUs ({model}), {pages / 2**30:.1f} GiB RAM, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the start"
    )


def aws_text(calls: dict[str, int]) -> str:
    return f"{sum(calls.values())} ({', '.join(f'{k} {v}' for k, v in sorted(calls.items()))})"


def tables(everything: list[dict]) -> str:
    """The markdown: per run, a row per size; then the floor and the exponents; then the
    sizes the tool refused."""
    results = [r for r in everything if "refused" not in r]
    lines = []
    for name in RUNS:
        lines += [
            f"\n**{name}**\n",
            "| users | time | SQL statements applied | catalog queries | round trips "
            "(connections) | Secrets Manager calls | users changed |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in results:
            run = r["runs"][name]
            lines.append(
                f"| {r['users']} | {run['seconds']:.2f} s | {run['statements']} | "
                f"{run['catalog_queries']} | {run['round_trips']} ({run['connections']}) | "
                f"{aws_text(run['aws_calls'])} | {run['changed']} |"
            )
    lines += [
        "\n**no-op against the floor, and peak memory**\n",
        "| users | no-op | floor | no-op / floor | AWS calls (limit N/8 + 10) | writes | "
        "peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    reads = {"GetSecretValue", "ListSecrets", "BatchGetSecretValue", "DescribeSecret"}
    for r in results:
        run = r["runs"]["no-op"]
        calls = run["aws_calls"]
        writes = sum(v for k, v in calls.items() if k not in reads)
        lines.append(
            f"| {r['users']} | {run['seconds']:.2f} s | {r['floor']:.2f} s | "
            f"{run['seconds'] / r['floor']:.2f} | {sum(calls.values())} "
            f"({r['users'] / 8 + 10:.0f}) | {writes} | {r['max_rss_mb']:.0f} MB |"
        )
    fitted = [r for r in results if r["users"] >= 500]
    if len(fitted) >= 2:  # 500 to 5,000 users, or to the largest size measured
        slopes = ", ".join(
            f"{n} {exponent([(r['users'], r['runs'][n]['seconds']) for r in fitted]):.2f}"
            for n in RUNS
        )
        floor_slope = exponent([(r["users"], r["floor"]) for r in fitted])
        lines.append(
            f"\nGrowth exponent from 500 to {fitted[-1]['users']:,} users (least-squares "
            f"log-log slope over {len(fitted)} sizes): {slopes}; floor {floor_slope:.2f}."
        )
    for r in results:
        if "report_bytes" in r:
            sizes = ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in r["report_bytes"].items())
            lines.append(f"\n{r['users']:,} users, the report's JSON: {sizes}.")
    for r in everything:
        if "refused" in r:
            refused = r["refused"]
            lines.append(
                f"\n{r['users']:,} users: refused up front in {refused['seconds']:.2f} s, "
                f"Secrets Manager calls {aws_text(refused['aws_calls'])}, peak RSS "
                f'{r["max_rss_mb"]:.0f} MB: "{refused["said"]}..."'
            )
    return "\n".join(lines)


def main(
    args: argparse.Namespace,
    script: str,
    extra: list[str],
    **engine: Any,
) -> None:
    """As a child (--one N): measure one size and print it as JSON. Otherwise run a child per
    size, one after the other, and print the tables."""
    if args.one:
        naive = engine.pop("naive") if args.naive else None
        engine.pop("naive", None)
        print(json.dumps(measure_one(args, naive=naive, **engine)))
        return
    print(machine())
    results = []
    for size in [int(s) for s in args.users.split(",")]:
        command = [
            sys.executable,
            script,
            "--one",
            str(size),
            "--tables",
            str(args.tables),
            "--writes-per-second",
            str(args.writes_per_second),
            "--reads-per-second",
            str(args.reads_per_second),
            "--refused-above",
            str(args.refused_above),
            "--shape",
            args.shape,
            *extra,
            *(["--naive"] if args.naive else []),
        ]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode:
            print(f"{size} users failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            break
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        if "refused" in result:
            runs_text = f"refused in {result['refused']['seconds']:.2f} s"
        else:
            runs_text = ", ".join(f"{k} {v['seconds']:.2f} s" for k, v in result["runs"].items())
            runs_text += f", floor {result['floor']:.2f} s"
        print(
            f"{size} users ({result['server']}, {time.perf_counter() - started:.0f} s in all): "
            f"{runs_text}",
            flush=True,
        )
    print(tables(results))
    saved = Path(tempfile.gettempdir()) / f"bench-{engine['engine']}.json"
    saved.write_text(json.dumps(results, indent=1))
    print(f"\n(the figures as JSON: {saved})")
