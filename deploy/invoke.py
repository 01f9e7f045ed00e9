"""Invoke the deployed RDS Initializer with one or more event files (deploy/invoke.sh runs this).

    deploy/invoke.sh [--dry-run] [-j N] [--output-dir DIR] [--secrets-writes-per-second W]
        [--secrets-reads-per-second R] FUNCTION_NAME EVENT.json|DIR ...

Every argument is checked, and every event file read, before anything is invoked: an unknown
option, `dry-run` without its dashes, a missing file or a file that is not a JSON object is a
usage error (exit 2) that invokes nothing. Then the AWS CLI's region and credentials are
checked once (`aws sts get-caller-identity`): without them, one message, exit 2, nothing
invoked. A folder stands for its *.json files (schemas left out). Several events are
invoked at most N at a time (default 4), each once: `aws lambda invoke` with one attempt and a
read timeout as long as Lambda's longest run, since a CLI retry after its default 60 s would
start a second run while the first is still working. A read timeout is reported as an
unknown outcome: the function may still be running.

A fleet shares the account's Secrets Manager quotas (docs/fleets.md). Events on one cluster
(the same rds_host and rds_port, or without rds_host the same master secret) are invoked one
after the other: the function holds a cluster-wide lock for a whole run, so they would only
queue behind it. Each invocation is given its share of the fleet's paces in its event
(secrets_writes_per_second, secrets_reads_per_second), by its cluster's users against those
of the clusters that may run beside it (Schedule says how); an event's own lower pace is
kept. So the invocations running at any moment never write faster than W a second in all,
nor read in bulk faster than R. The cluster with the most users left goes first.

Each success prints a per-user summary; each failure prints the error type, its message, what
was applied, and the tail of the function's log. With several events, one table follows
(database, changed, users, result). Exit 0 when every invocation succeeded, 1 otherwise.
`--output-dir` keeps one response file per event, even when two events share a file name.
Needs the AWS CLI (v1 or v2) and Python 3.8+; only the standard library.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

READ_TIMEOUT = 900  # seconds: Lambda's maximum run time
# A fleet's Secrets Manager paces, calls per second in all: the function's own defaults
# (SECRETS_WRITES_PER_SECOND, SECRETS_READS_PER_SECOND), under AWS's 50 writes a second for
# each group of write calls and 100 bulk reads, leaving room for the account's other callers.
FLEET_WRITES_PER_SECOND = 40.0
FLEET_READS_PER_SECOND = 80.0
PACE_MAX = 10_000  # what the function takes
CHECK_TIMEOUT = 30  # seconds for `aws sts get-caller-identity`, which answers in one

USAGE = (
    "deploy/invoke.sh [--dry-run] [-j N] [--output-dir DIR] [--secrets-writes-per-second W] "
    "[--secrets-reads-per-second R] FUNCTION_NAME EVENT.json|DIR ..."
)
EPILOG = """\
exit status:
  0  every invocation succeeded (a dry run: every plan was made)
  1  an invocation failed, or its outcome is unknown (a read timeout); each is reported
  2  a usage error, a missing AWS region or credentials: nothing was invoked

examples:
  deploy/invoke.sh --dry-run rds-initializer lambda-invocation/seed-example.json
  deploy/invoke.sh -j 4 --output-dir reports rds-initializer events/

The AWS CLI (v1 or v2) takes its region and credentials from the environment (AWS_REGION or
AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, AWS_PROFILE) or
from an instance or container role; deploy/Jenkinsfile shows both ways in Jenkins."""
# Positional arguments that are an option without its dashes.
MISPLACED_OPTIONS = {"dry-run", "dryrun", "dry_run"}
# What the CLI prints when the request may have reached Lambda but no answer came back: the
# function may have run, or still be running.
ANSWER_LOST = ("Read timeout on endpoint URL", "Connection was closed before we received")
# What the CLI prints when Lambda never ran the function.
NOT_INVOKED = (
    "AccessDeniedException",
    "ResourceNotFoundException",
    "InvalidRequestContentException",
    "RequestTooLargeException",
    "Could not connect to the endpoint URL",
    "Unable to locate credentials",
    "You must specify a region",
)


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parse_args(argv):
    parser = Parser(
        prog="deploy/invoke.sh",
        allow_abbrev=False,  # --dry must not pass for --dry-run
        usage=USAGE,
        description="Invoke the RDS Initializer with event files and summarise the results.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dry-run", action="store_true", help="plan only: change nothing")
    parser.add_argument(
        "-j", "--jobs", type=int, default=4, help="invocations at a time (default 4)"
    )
    parser.add_argument("--output-dir", help="write each function response there, as JSON")
    parser.add_argument(
        "--secrets-writes-per-second",
        type=float,
        default=FLEET_WRITES_PER_SECOND,
        metavar="W",
        help="Secrets Manager writes a second for the whole fleet, shared by its invocations "
        f"(default {FLEET_WRITES_PER_SECOND:g})",
    )
    parser.add_argument(
        "--secrets-reads-per-second",
        type=float,
        default=FLEET_READS_PER_SECOND,
        metavar="R",
        help="Secrets Manager bulk reads a second for the whole fleet, shared likewise "
        f"(default {FLEET_READS_PER_SECOND:g})",
    )
    parser.add_argument("function_name", help="the deployed function")
    parser.add_argument("events", nargs="+", help="event files, or folders of them")
    args = parser.parse_intermixed_args(argv)
    if args.jobs < 1:
        raise UsageError("-j needs a number of at least 1")
    for option, pace in (
        ("--secrets-writes-per-second", args.secrets_writes_per_second),
        ("--secrets-reads-per-second", args.secrets_reads_per_second),
    ):
        if not 0 < pace <= PACE_MAX:  # NaN too
            raise UsageError(f"{option} needs a number of calls above 0 and at most {PACE_MAX}")
    misplaced = [
        argument
        for argument in (args.function_name, *args.events)
        if argument.lower() in MISPLACED_OPTIONS and not Path(argument).exists()
    ]
    if misplaced:
        raise UsageError(f"'{misplaced[0]}' is an option without its dashes: write --dry-run")
    return args


def cluster_of(event):
    """What the function locks for a run: the server, by the event's host and port, or, for
    an event that takes its host from the master secret, by that secret."""
    host = event.get("rds_host")
    if isinstance(host, str) and host.strip():
        return ("host", host.strip().lower(), str(event.get("rds_port") or "").strip())
    return ("secret", str(event.get("secret_name")))


def with_share(event, key, share):
    """The event with its share of a pace, or its own pace where that is lower. A value the
    function would refuse is left for it to refuse."""
    own = event.get(key)
    if own is None:
        return {**event, key: share}
    if isinstance(own, (int, float)) and not isinstance(own, bool) and own > 0:
        return {**event, key: min(own, share)}
    return event


def users_of(event):
    users = event.get("users")
    return len(users) if isinstance(users, list) else 0


class Schedule:
    """Which events to invoke next, one per cluster and at most `jobs` at a time, and each
    one's share of the fleet's `paces` (event key -> calls a second in all).

    Each cluster has a weight, fixed when the fleet starts: its users, in all its events, but
    at least half the clusters' mean when every cluster runs at once (jobs >= clusters), and
    at least twice the mean when they take turns. An invocation's share is the pace times its
    cluster's weight over the sum of the largest min(jobs, A) weights of the A clusters with
    events not yet finished, counted when it starts. That sum never grows (clusters only
    finish), and the clusters running at any moment are at most min(jobs, A) of those A: so
    their weights add up to that sum at most, and their shares to the pace at most.

    So when every cluster runs at once, a cluster's share is in proportion to its users and
    the clusters' queues end together, where equal shares would leave the longest queues to
    end alone on shares fixed while every cluster ran. When they take turns, clusters up to
    twice the mean share equally (the turns come and go), and one far above it is not left to
    run alone at the end on a share fixed while all the others ran (docs/fleets.md;
    benchmarks/fleet_model.py compares the two)."""

    def __init__(self, events, jobs, paces):
        self.jobs, self.paces = jobs, paces
        self.queues = {}  # cluster -> its events not yet started, as (index, path, event)
        for index, (path, event) in enumerate(events):
            self.queues.setdefault(cluster_of(event), deque()).append((index, path, event))
        self.running = set()  # clusters
        users = {c: sum(users_of(e) for _, _, e in queue) for c, queue in self.queues.items()}
        mean = sum(users.values()) / len(users) if users else 0
        least = mean / 2 if jobs >= len(users) else 2 * mean
        self.weights = {cluster: max(count, least, 1) for cluster, count in users.items()}

    def starts(self):
        """The invocations to start now, as (cluster, index, path, event with its shares):
        the clusters free to start, the one with the most users left first."""
        started = []
        while len(self.running) < self.jobs:
            free = [cluster for cluster in self.queues if cluster not in self.running]
            if not free:
                break
            cluster = max(free, key=self.users_left)  # the first of the largest
            index, path, event = self.queues[cluster].popleft()
            if not self.queues[cluster]:
                del self.queues[cluster]
            self.running.add(cluster)
            part = self.part(cluster)
            for key, pace in self.paces.items():
                event = with_share(event, key, pace * part)
            started.append((cluster, index, path, event))
        return started

    def finished(self, cluster):
        self.running.discard(cluster)

    def users_left(self, cluster):
        return sum(users_of(event) for _, _, event in self.queues[cluster])

    def part(self, cluster):
        active = set(self.queues) | self.running
        heaviest = sorted((self.weights[c] for c in active), reverse=True)
        return self.weights[cluster] / sum(heaviest[: min(self.jobs, len(active))])


def run_fleet(events, jobs, writes, reads, invoke_one):
    """invoke_one(index, path, event) for each (path, event) of `events`, as Schedule orders
    them and with the shares it gives of the paces `writes` and `reads`; the outcomes in the
    order of `events`."""
    schedule = Schedule(
        events, jobs, {"secrets_writes_per_second": writes, "secrets_reads_per_second": reads}
    )
    outcomes = [None] * len(events)
    running = {}  # future -> (cluster, index)
    with ThreadPoolExecutor(max(1, min(jobs, len(schedule.queues)))) as pool:
        while True:
            for cluster, index, path, event in schedule.starts():
                running[pool.submit(invoke_one, index, path, event)] = (cluster, index)
            if not running:
                return outcomes
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                cluster, index = running.pop(future)
                schedule.finished(cluster)
                outcomes[index] = future.result()


def aws_region(aws):
    """The region the AWS CLI will use, or "": the environment, then the profile's."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if os.environ.get(name):
            return os.environ[name]
    done = run_cli(aws, ["configure", "get", "region"])
    return done.stdout.strip() if done.returncode == 0 else ""


def check_aws(aws, region):
    """What keeps the CLI from invoking anything (no region, no credentials), or None."""
    if not region:
        return (
            "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or the profile's "
            "(aws configure set region REGION)"
        )
    done = run_cli(aws, ["sts", "get-caller-identity", "--output", "json"])
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        return (
            "the AWS CLI has no working credentials (aws sts get-caller-identity: "
            f"{said[-1] if said else f'exit {done.returncode}'}); give the agent AWS_PROFILE, "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or a role"
        )
    return None


def run_cli(aws, arguments, timeout=CHECK_TIMEOUT):
    try:
        return subprocess.run(  # noqa: S603 - the AWS CLI with our own arguments
            [aws, *arguments],
            capture_output=True,
            text=True,
            env={**os.environ, "AWS_MAX_ATTEMPTS": "1"},
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(arguments, 1, "", f"no answer in {timeout} s")


def response_names(files):
    """One response file name per event: `<stem>.response.json`, numbered where stems repeat."""
    stems = [path.stem for path in files]
    names, taken = [], set()
    for stem in stems:
        number = 1
        name = f"{stem}.response.json" if stems.count(stem) == 1 else f"{stem}-1.response.json"
        while name in taken:
            number += 1
            name = f"{stem}-{number}.response.json"
        taken.add(name)
        names.append(name)
    return names


def event_files(arguments):
    files, problems = [], []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.json") if not p.name.endswith(".schema.json"))
            if not found:
                problems.append(f"{argument}: a folder without event files (*.json)")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{argument}: no such event file or folder")
    return files, problems


def load_events(files, dry_run):
    events, problems = [], []
    for path in files:
        try:
            event = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            problems.append(f"{path}: not a JSON file ({error})")
            continue
        if not isinstance(event, dict):
            problems.append(f"{path}: the event must be a JSON object")
            continue
        if dry_run:
            event["dry_run"] = True
        events.append((path, event))
    return events, problems


def invoke(aws, function_name, path, event, target):
    """One `aws lambda invoke`; returns the outcome as a dict. `target`: where to write the
    response, or None."""
    outcome = {
        "file": str(path),
        "database": event.get("database_name") or "?",
        "host": event.get("rds_host") or "",
    }
    with tempfile.TemporaryDirectory(prefix="rds-initializer-") as work:
        payload, response = Path(work) / "payload.json", Path(work) / "response.json"
        payload.write_text(json.dumps(event))
        done = subprocess.run(  # noqa: S603 - the AWS CLI with our own arguments
            [
                aws,
                "lambda",
                "invoke",
                "--function-name",
                function_name,
                "--payload",
                f"fileb://{payload}",
                "--cli-read-timeout",
                str(READ_TIMEOUT),
                "--log-type",
                "Tail",
                "--output",
                "json",
                str(response),
            ],  # fmt: skip
            capture_output=True,
            text=True,
            env={**os.environ, "AWS_MAX_ATTEMPTS": "1"},
            check=False,
        )
        body = response.read_text() if response.exists() else ""
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip() or f"exit {done.returncode}"
        if any(marker in said for marker in ANSWER_LOST):
            outcome.update(
                ok=False,
                error_type="no answer",
                message=said,
                applied=(
                    "outcome unknown: the function may still be running; check its log "
                    f"(/aws/lambda/{function_name}) before running this event again"
                ),
                log="",
            )
        else:
            never_ran = any(marker in said for marker in NOT_INVOKED)
            outcome.update(
                ok=False,
                error_type="aws lambda invoke failed",
                message=said,
                applied=(
                    "nothing: Lambda did not run the function"
                    if never_ran
                    else f"not known: check the function's log (/aws/lambda/{function_name})"
                ),
                log="",
            )
        return outcome
    try:
        meta = json.loads(done.stdout or "{}")
    except ValueError:
        meta = {}
    try:
        log = base64.b64decode(meta.get("LogResult") or "").decode("utf-8", "replace")
    except ValueError:
        log = ""
    try:
        result = json.loads(body) if body.strip() else None
    except ValueError:
        result = body
    if target:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
        outcome["response"] = str(target)
    outcome["log"] = log
    if meta.get("FunctionError") or not isinstance(result, dict) or "errorMessage" in result:
        error = result if isinstance(result, dict) else {"errorMessage": str(result)}
        outcome.update(
            ok=False,
            error_type=error.get("errorType") or meta.get("FunctionError") or "unknown",
            message=str(error.get("errorMessage", "")),
        )
        return outcome
    if result.get("status") not in ("success", "dry_run") or not isinstance(
        result.get("users"), list
    ):
        outcome.update(
            ok=False,
            error_type="unexpected response",
            message=f"the function answered with something that is not a report: {body[:500]}",
        )
        return outcome
    outcome.update(ok=True, report=result, database=result.get("database", outcome["database"]))
    return outcome


def applied(error_type, message):
    """What the failed run left applied, as the function's message says it."""
    if error_type == "InvalidEvent" or message.startswith("invalid event"):
        return "nothing: the event was refused before anything was touched"
    for marker in ("Applied before it", "Nothing was applied", "The database transaction was"):
        at = message.find(marker)
        if at >= 0:
            return re.split(r"(?<=\.) (?=[A-Z])", message[at:])[0]
    return "not said: see the message and the log below"


def indent(text, prefix="    "):
    lines = []
    for line in text.splitlines() or [""]:
        wrapped = textwrap.wrap(line, 96, break_long_words=False, break_on_hyphens=False)
        lines += [prefix + part for part in wrapped or [""]]
    return "\n".join(lines)


def failure_text(outcome, log_lines=40):
    message = outcome["message"]
    said_applied = outcome.get("applied") or applied(outcome["error_type"], message)
    # One sentence a line: the function's messages are long single lines.
    readable = re.sub(r"(?<=[.:]) (?=[A-Z])", "\n", message)
    parts = [
        f"FAILED {outcome['database']} ({outcome['file']})",
        f"  error type: {outcome['error_type']}",
        "  message:",
        indent(readable),
        "  applied:",
        indent(said_applied),
    ]
    if outcome.get("response"):
        parts.append(f"  response: {outcome['response']}")
    log = [line for line in outcome.get("log", "").splitlines() if line.strip()]
    if log:
        parts += [f"  log tail (last {min(len(log), log_lines)} lines):"]
        parts += ["    " + line for line in log[-log_lines:]]
    return "\n".join(parts)


def success_text(outcome):
    report = outcome["report"]
    users = report.get("users") or []
    mode = "dry run" if report.get("dry_run") or report.get("status") == "dry_run" else "applied"
    changed = "changed" if report.get("changed") else "unchanged"
    head = (
        f"OK {outcome['database']} ({outcome['file']}): {mode}, {changed}, "
        f"{len(users)} user(s), {report.get('duration_ms', '?')} ms"
    )
    rows = [("user", "action", "result", "secret", "rotation", "changes")]
    for user in users:
        secret = (user.get("secret") or {}).get("result", "-")
        changes = user.get("changes") or []
        rows.append(
            (
                str(user.get("db_user")),
                str(user.get("action")),
                str(user.get("result")),
                str(secret),
                str(user.get("rotation", "-")),
                "; ".join(changes) if changes else "-",
            )
        )
    lines = [head, *table(rows, indent="  ")]
    if outcome.get("response"):
        lines.append(f"  response: {outcome['response']}")
    if report.get("sql"):
        lines += ["  sql:"] + [f"    {statement}" for statement in report["sql"]]
    return "\n".join(lines)


def table(rows, indent=""):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    out = []
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(len(widths))] + [row[-1]]
        out.append(indent + "  ".join(cells).rstrip())
    return out


def summary_rows(outcomes):
    rows = [("database", "changed", "users", "result", "event")]
    for outcome in outcomes:
        if outcome["ok"]:
            report = outcome["report"]
            changed = "yes" if report.get("changed") else "no"
            users = str(len(report.get("users") or []))
            result = report.get("status", "success")
        elif outcome["error_type"] == "no answer":
            changed, users, result = "?", "?", "UNKNOWN (no answer)"
        else:
            changed, users, result = "?", "?", f"FAILED ({outcome['error_type']})"
        rows.append((outcome["database"], changed, users, result, outcome["file"]))
    return rows


def main(argv):
    try:
        args = parse_args(argv)
        files, problems = event_files(args.events)
        events, unreadable = load_events(files, args.dry_run)
        problems += unreadable
        aws = os.environ.get("INVOKE_AWS_CLI") or shutil.which("aws")
        if aws is None:
            problems.append("the AWS CLI (aws) is not on PATH")
        if problems:
            raise UsageError("\n".join(problems))
    except UsageError as error:
        print(f"deploy/invoke.sh: {error}", file=sys.stderr)
        print(f"usage: {USAGE}\n(--help for more.) Nothing was invoked.", file=sys.stderr)
        return 2
    if os.environ.get("AWS_REGION"):
        # The AWS CLI v1 reads only AWS_DEFAULT_REGION; v2 prefers AWS_REGION anyway.
        os.environ.setdefault("AWS_DEFAULT_REGION", os.environ["AWS_REGION"])
    region = aws_region(aws)
    unusable = check_aws(aws, region)
    if unusable:
        print(f"deploy/invoke.sh: {unusable}. Nothing was invoked.", file=sys.stderr)
        return 2
    targets = (
        [Path(args.output_dir) / name for name in response_names([p for p, _ in events])]
        if args.output_dir
        else [None] * len(events)
    )
    mode = "dry run" if args.dry_run else "apply"
    clusters = len({cluster_of(event) for _, event in events})
    jobs = min(args.jobs, clusters)
    print(
        f"invoking {args.function_name} in {region}: {len(events)} event(s) on {clusters} "
        f"cluster(s), {mode}, {jobs} at a time; Secrets Manager paces shared by them: "
        f"{args.secrets_writes_per_second:g} writes and {args.secrets_reads_per_second:g} "
        "bulk reads a second in all"
    )
    sys.stdout.flush()
    outcomes = run_fleet(
        events,
        args.jobs,
        args.secrets_writes_per_second,
        args.secrets_reads_per_second,
        lambda index, path, event: invoke(aws, args.function_name, path, event, targets[index]),
    )
    for outcome in outcomes:
        print()
        print(success_text(outcome) if outcome["ok"] else failure_text(outcome))
    failed = sum(not outcome["ok"] for outcome in outcomes)
    unknown = sum(outcome.get("error_type") == "no answer" for outcome in outcomes)
    if len(outcomes) > 1:
        print()
        print("\n".join(table(summary_rows(outcomes))))
    print()
    print(f"{len(outcomes) - failed} succeeded, {failed} failed")
    if unknown:
        print(f"{unknown} of them with an unknown outcome: check the function's log")
    if failed:
        print(f"rds-initializer: {failed} of {len(outcomes)} invocation(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
