"""deploy/invoke.sh: a mistyped option invokes nothing; a failure reads as a multi-line message
with the log tail; a success prints a per-user summary; a fleet of event files is invoked with
bounded parallelism and summarised in one table, failing if one failed. A stand-in `aws` on
PATH plays the CLI: it records each payload and answers as the test says for that database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

INVOKE = ROOT / "deploy" / "invoke.sh"
SEED = ROOT / "lambda-invocation" / "seed-example.json"

FAKE_AWS = """#!PYTHON
# Stand-in for `aws lambda invoke ... --payload fileb://P --log-type Tail --output json OUT`,
# and for the checks before it: `aws configure get region` (the profile's region, from
# PROFILE_REGION) and `aws sts get-caller-identity` (fails as the CLI does without credentials
# when NO_CREDENTIALS is set). Every call is counted in CALLS.
import base64, json, os, sys, time, uuid
args = sys.argv[1:]
with open(os.environ["CALLS"], "a") as calls:
    calls.write(" ".join(args[:2]) + "\\n")
if args[:3] == ["configure", "get", "region"]:
    if not os.environ.get("PROFILE_REGION"):
        sys.exit(1)
    print(os.environ["PROFILE_REGION"])
    sys.exit(0)
if args[:2] == ["sts", "get-caller-identity"]:
    if os.environ.get("NO_CREDENTIALS"):
        sys.stderr.write("\\nUnable to locate credentials. You can configure credentials by "
                         "running \\"aws configure\\".\\n")
        sys.exit(253)
    print(json.dumps({"UserId": "AIDA", "Account": "123456789012",
                      "Arn": "arn:aws:iam::123456789012:user/jenkins"}))
    sys.exit(0)
assert args[:2] == ["lambda", "invoke"], args
payload = next(a for a in args if a.startswith("fileb://"))[len("fileb://"):]
event = json.load(open(payload))
record = os.path.join(os.environ["RECORD"], uuid.uuid4().hex + ".json")
answers = json.load(open(os.environ["ANSWERS"]))
answer = answers.get(event.get("database_name"), answers.get("*"))
started = time.time()
time.sleep(answer.get("sleep", 0))
json.dump({"event": event, "args": args, "env_attempts": os.environ.get("AWS_MAX_ATTEMPTS"),
           "env_region": os.environ.get("AWS_DEFAULT_REGION"),
           "start": started, "end": time.time()}, open(record, "w"))
if answer.get("exit"):
    sys.stderr.write(answer.get("stderr", "") + "\\n")
    sys.exit(answer["exit"])
body = answer["body"]
if isinstance(body, dict) and body.get("database") == "<from event>":
    body = dict(body, database=event.get("database_name"))
open(args[-1], "w").write(json.dumps(body))
meta = {"StatusCode": 200, "ExecutedVersion": "$LATEST",
        "LogResult": base64.b64encode(answer.get("log", "").encode()).decode()}
if answer.get("function_error"):
    meta["FunctionError"] = answer["function_error"]
print(json.dumps(meta, indent=4))
"""

REPORT = {
    "status": "success",
    "dry_run": False,
    "changed": True,
    "engine": "postgres",
    "database": "<from event>",
    "users": [
        {
            "db_user": "airflow-rw-ddl",
            "action": "create",
            "result": "created",
            "changes": ["create role", "secret created"],
            "secret": {"name": "s1", "result": "created"},
            "rotation": "unchanged",
        },
        {
            "db_user": "airflow-ro-dml",
            "action": "create",
            "result": "unchanged",
            "changes": [],
            "secret": {"name": "s2", "result": "unchanged"},
            "rotation": "unchanged",
        },
    ],
    "duration_ms": 175,
}
APPLY_ERROR = {
    "errorType": "ApplyError",
    "errorMessage": (
        "step 2 of 3 (airflow-rw-dml: grant SELECT on tables) failed: permission denied. "
        "Applied before it (1 statements, each final): airflow-rw-ddl: create user. "
        "New users' passwords are reused by the next run: a re-run converges."
    ),
    "requestId": "r-1",
}
LOG = "\n".join(f'{{"level": "INFO", "message": "line {n}"}}' for n in range(1, 61))


@pytest.fixture
def aws(tmp_path):
    """Run invoke.sh with the stand-in aws; returns run(answers, *args) -> (done, records)."""
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    fake = bin_dir / "aws"
    fake.write_text(FAKE_AWS.replace("PYTHON", sys.executable))
    fake.chmod(0o755)

    def run(answers: dict, *args: str, environment: dict | None = None):
        """`environment`: variables to set, or to unset where the value is None."""
        (tmp_path / "answers.json").write_text(json.dumps(answers))
        env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "RECORD": str(record),
            "ANSWERS": str(tmp_path / "answers.json"),
            "CALLS": str(tmp_path / "calls.txt"),
            "AWS_REGION": "us-east-1",
        }
        for key, value in (environment or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        done = subprocess.run(
            [str(INVOKE), *args], capture_output=True, text=True, env=env, check=False
        )
        records = [json.loads(p.read_text()) for p in record.glob("*.json")]
        return done, records

    return run


def fleet(tmp_path: Path, *databases: str, clusters: bool = False) -> Path:
    """A folder of event files, one per database, plus the schema, which is not an event; the
    databases on the seed's cluster, or (`clusters`) each on a cluster of its own."""
    folder = tmp_path / "fleet"
    folder.mkdir()
    seed = json.loads(SEED.read_text())
    for database in databases:
        event = {**seed, "database_name": database}
        if clusters:
            event["rds_host"] = f"{database}.cluster-x.us-east-1.rds.amazonaws.com"
        (folder / f"{database}.json").write_text(json.dumps(event))
    (folder / "event.schema.json").write_text("{}")
    return folder


def test_a_success_prints_a_per_user_summary(aws):
    done, records = aws({"*": {"body": REPORT}}, "rds-initializer", str(SEED))

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("OK airflow") and "2 user(s)" in line for line in lines)
    ddl = next(line for line in lines if "airflow-rw-ddl" in line)
    assert "created" in ddl and "create role; secret created" in ddl
    assert "1 succeeded, 0 failed" in done.stdout
    (record,) = records
    assert "dry_run" not in record["event"] and record["env_attempts"] == "1"
    assert record["args"][record["args"].index("--log-type") + 1] == "Tail"
    assert record["args"][record["args"].index("--cli-read-timeout") + 1] == "900"


def test_dry_run_adds_the_flag_to_every_event_and_prints_the_sql(aws, tmp_path):
    report = {**REPORT, "status": "dry_run", "dry_run": True, "sql": ["CREATE ROLE x"]}
    done, records = aws({"*": {"body": report}}, "--dry-run", "rds-initializer", str(SEED))

    assert done.returncode == 0
    assert [r["event"]["dry_run"] for r in records] == [True]
    assert "dry run" in done.stdout and "    CREATE ROLE x" in done.stdout


def test_the_dry_run_flag_may_come_last(aws):
    done, records = aws({"*": {"body": REPORT}}, "rds-initializer", str(SEED), "--dry-run")
    assert done.returncode == 0 and records[0]["event"]["dry_run"] is True


@pytest.mark.parametrize(
    "mistyped",
    [["--dryrun"], ["-n"], ["--dry"], ["--dry_run"], ["dry-run"], ["-j", "0"], ["--jobs=x"]],
)
def test_a_mistyped_option_is_a_usage_error_that_invokes_nothing(aws, mistyped):
    done, records = aws({"*": {"body": REPORT}}, "rds-initializer", str(SEED), *mistyped)

    assert done.returncode == 2
    assert records == []
    assert "usage: deploy/invoke.sh" in done.stderr and "Nothing was invoked" in done.stderr


def test_missing_arguments_are_a_usage_error(aws):
    done, records = aws({"*": {"body": REPORT}}, "rds-initializer")
    assert done.returncode == 2 and records == []


def test_a_function_error_prints_a_readable_message_and_the_log_tail(aws):
    answers = {"*": {"function_error": "Unhandled", "body": APPLY_ERROR, "log": LOG}}
    done, _ = aws(answers, "rds-initializer", str(SEED))

    assert done.returncode == 1
    out = done.stdout
    assert "\\n" not in out
    assert "FAILED airflow" in out and "  error type: ApplyError" in out
    message = out.split("  message:\n")[1].split("  applied:\n")[0].splitlines()
    assert len(message) >= 3  # one sentence a line
    applied = out.split("  applied:\n")[1].splitlines()[0]
    assert "Applied before it (1 statements, each final): airflow-rw-ddl: create user." in applied
    assert "log tail (last 40 lines)" in out
    assert '"message": "line 60"' in out and '"message": "line 20"' not in out
    assert "1 of 1 invocation(s) failed" in done.stderr


def test_an_invalid_event_lists_its_problems_one_a_line(aws):
    error = {
        "errorType": "InvalidEvent",
        "errorMessage": "invalid event:\n- unknown key 'secret_nam'\n- secret_name is required",
    }
    answers = {"*": {"function_error": "Unhandled", "body": error, "log": "x"}}
    done, _ = aws(answers, "rds-initializer", str(SEED))

    assert done.returncode == 1
    assert "    - unknown key 'secret_nam'\n    - secret_name is required" in done.stdout
    assert "nothing: the event was refused before anything was touched" in done.stdout


def test_a_cli_failure_is_a_failed_invocation(aws):
    answers = {"*": {"exit": 254, "stderr": "An error occurred (AccessDeniedException)"}}
    done, _ = aws(answers, "rds-initializer", str(SEED))

    assert done.returncode == 1
    assert "aws lambda invoke failed" in done.stdout and "AccessDeniedException" in done.stdout


def test_an_answer_that_is_not_a_report_is_a_failure(aws):
    """E.g. a stand-in function that echoes its event: exit 1, never a silent success."""
    done, _ = aws({"*": {"body": {"secret_name": "x", "users": []}}}, "f", str(SEED))

    assert done.returncode == 1
    assert "error type: unexpected response" in done.stdout


def test_a_fleet_is_invoked_with_bounded_parallelism_and_summarised_in_one_table(aws, tmp_path):
    folder = fleet(tmp_path, "billing", "orders", "airflow", "search", "users", clusters=True)
    answers = {
        "*": {"body": REPORT, "sleep": 0.4},
        "orders": {"function_error": "Unhandled", "body": APPLY_ERROR, "sleep": 0.4},
    }
    started = time.monotonic()
    done, records = aws(answers, "-j", "2", "rds-initializer", str(folder))

    assert done.returncode == 1
    assert sorted(r["event"]["database_name"] for r in records) == [
        "airflow",
        "billing",
        "orders",
        "search",
        "users",
    ]
    spans = [(r["start"], r["end"]) for r in records]
    # At any moment (checked at each start), how many run: spans that only overlap one
    # another's ends are never three at once.
    most = max(sum(s <= start < e for s, e in spans) for start, _ in spans)
    assert most == 2, spans  # two at a time, never more
    assert time.monotonic() - started < 5 * 0.4 + 1.5  # and not one after the other
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("database"))
    assert lines[header].split() == ["database", "changed", "users", "result", "event"]
    table = {line.split()[0]: line.split() for line in lines[header + 1 : header + 6]}
    assert table["billing"][1:4] == ["yes", "2", "success"]
    assert table["orders"][1:4] == ["?", "?", "FAILED"]
    assert "4 succeeded, 1 failed" in done.stdout


def test_the_databases_of_one_cluster_are_invoked_one_after_the_other(aws, tmp_path):
    """Each run holds the cluster's lock: a second one there would only wait for it."""
    folder = fleet(tmp_path, "billing", "orders", "airflow")
    done, records = aws({"*": {"body": REPORT, "sleep": 0.2}}, "-j", "3", "f", str(folder))

    assert done.returncode == 0 and "3 event(s) on 1 cluster(s), apply, 1 at a time" in done.stdout
    spans = sorted((r["start"], r["end"]) for r in records)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False))


def test_a_fleet_that_succeeds_exits_0(aws, tmp_path):
    folder = fleet(tmp_path, "billing", "orders")
    done, records = aws(
        {"*": {"body": {**REPORT, "changed": False}}}, "rds-initializer", str(folder)
    )

    assert done.returncode == 0 and len(records) == 2
    assert "2 succeeded, 0 failed" in done.stdout


def test_a_fleet_with_an_unreadable_event_invokes_nothing(aws, tmp_path):
    folder = fleet(tmp_path, "billing")
    (tmp_path / "broken.json").write_text("{ not json")
    done, records = aws(
        {"*": {"body": REPORT}}, "rds-initializer", str(folder), str(tmp_path / "broken.json")
    )

    assert done.returncode == 2 and records == []
    assert "broken.json: not a JSON file" in done.stderr


def test_responses_are_written_for_archiving(aws, tmp_path):
    folder = fleet(tmp_path, "billing")
    out = tmp_path / "reports"
    done, _ = aws({"*": {"body": REPORT}}, "--output-dir", str(out), "rds-initializer", str(folder))

    assert done.returncode == 0
    assert json.loads((out / "billing.response.json").read_text())["status"] == "success"


def test_the_jenkinsfile_dry_runs_the_fleet_then_asks_then_applies():
    text = (ROOT / "deploy" / "Jenkinsfile").read_text()
    dry_run, approve, apply = (
        text.index("stage('Dry run')"),
        text.index("stage('Approve')"),
        text.index("stage('Apply')"),
    )
    assert dry_run < approve < apply
    assert "deploy/invoke.sh --dry-run -j" in text[dry_run:approve]
    assert "input message" in text[approve:apply]
    assert "deploy/invoke.sh -j" in text[apply:] and "--dry-run" not in text[apply:]


def test_without_credentials_one_message_and_nothing_invoked(aws, tmp_path):
    folder = fleet(tmp_path, *(f"db{n:02}" for n in range(50)))
    done, records = aws(
        {"*": {"body": REPORT}}, "rds-initializer", str(folder), environment={"NO_CREDENTIALS": "1"}
    )

    assert done.returncode == 2 and records == []
    (message,) = done.stderr.strip().splitlines()
    assert "no working credentials" in message and "Unable to locate credentials" in message
    assert message.endswith("Nothing was invoked.")
    assert done.stdout == ""
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert calls == ["sts get-caller-identity"]  # checked once, for the whole fleet


def test_without_a_region_one_message_and_nothing_invoked(aws, tmp_path):
    done, records = aws(
        {"*": {"body": REPORT}},
        "rds-initializer",
        str(SEED),
        environment={"AWS_REGION": None, "AWS_DEFAULT_REGION": None, "PROFILE_REGION": None},
    )

    assert done.returncode == 2 and records == []
    (message,) = done.stderr.strip().splitlines()
    assert "no AWS region" in message and "AWS_REGION" in message
    assert (tmp_path / "calls.txt").read_text().splitlines() == ["configure get"]


def test_the_profile_region_is_enough(aws):
    done, records = aws(
        {"*": {"body": REPORT}},
        "rds-initializer",
        str(SEED),
        environment={"AWS_REGION": None, "AWS_DEFAULT_REGION": None, "PROFILE_REGION": "eu-west-1"},
    )

    assert done.returncode == 0 and len(records) == 1
    assert "invoking rds-initializer in eu-west-1" in done.stdout


def test_aws_region_reaches_the_cli_v1_too(aws):
    """The AWS CLI v1 (botocore) reads AWS_DEFAULT_REGION only."""
    done, records = aws(
        {"*": {"body": REPORT}},
        "rds-initializer",
        str(SEED),
        environment={"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": None},
    )

    assert done.returncode == 0 and len(records) == 1
    assert records[0]["env_region"] == "eu-central-1"


@pytest.mark.parametrize("misplaced", ["dry-run", "dryrun", "DRY-RUN"])
@pytest.mark.parametrize("where", ["first", "last"])
def test_an_option_without_its_dashes_is_named_as_such(aws, tmp_path, misplaced, where):
    args = [misplaced, "rds-initializer", str(SEED)]
    if where == "last":
        args = ["rds-initializer", str(SEED), misplaced]
    done, records = aws({"*": {"body": REPORT}}, *args)

    assert done.returncode == 2 and records == []
    assert f"'{misplaced}' is an option without its dashes: write --dry-run" in done.stderr
    assert "no such event file" not in done.stderr
    assert not (tmp_path / "calls.txt").exists()  # not even the credentials check


def test_a_read_timeout_says_the_outcome_is_unknown(aws):
    timeout = (
        "\nRead timeout on endpoint URL: "
        '"https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/rds-initializer/invocations"'
    )
    done, _ = aws({"*": {"exit": 255, "stderr": timeout}}, "rds-initializer", str(SEED))

    assert done.returncode == 1
    applied = done.stdout.split("  applied:\n")[1].splitlines()[0].strip()
    assert applied.startswith(
        "outcome unknown: the function may still be running; check its log"
    ), applied
    assert "/aws/lambda/rds-initializer" in done.stdout
    assert "1 of them with an unknown outcome" in done.stdout


def test_a_refused_invocation_says_nothing_ran(aws):
    refused = "An error occurred (AccessDeniedException) when calling the Invoke operation: no"
    done, _ = aws({"*": {"exit": 254, "stderr": refused}}, "rds-initializer", str(SEED))

    assert done.returncode == 1
    assert "nothing: Lambda did not run the function" in done.stdout
    assert "see the message and the log below" not in done.stdout


def test_responses_of_events_with_the_same_file_name_are_all_kept(aws, tmp_path):
    seed = json.loads(SEED.read_text())
    for team in ("billing", "orders"):
        (tmp_path / team).mkdir()
        event = {**seed, "database_name": f"{team}_db"}
        (tmp_path / team / "prod.json").write_text(json.dumps(event))
    out = tmp_path / "reports"
    done, _ = aws(
        {"*": {"body": REPORT}},
        "--output-dir",
        str(out),
        "rds-initializer",
        str(tmp_path / "billing" / "prod.json"),
        str(tmp_path / "orders" / "prod.json"),
    )

    assert done.returncode == 0, done.stderr
    databases = sorted(json.loads(p.read_text())["database"] for p in out.iterdir())
    assert databases == ["billing_db", "orders_db"]
    assert sorted(p.name for p in out.iterdir()) == ["prod-1.response.json", "prod-2.response.json"]
    assert f"response: {out / 'prod-1.response.json'}" in done.stdout


def test_help_shows_the_exit_codes_and_two_examples(aws):
    done, records = aws({}, "--help")

    assert done.returncode == 0 and records == []
    help_text = done.stdout
    assert "exit status:" in help_text
    for code in ("0  every invocation succeeded", "1  an invocation failed", "2  a usage error"):
        assert code in help_text
    examples = help_text.split("examples:\n")[1].split("\n\n")[0].splitlines()
    assert len(examples) == 2 and all("deploy/invoke.sh" in line for line in examples)


def test_the_jenkinsfile_gives_the_agent_a_region_and_credentials():
    text = (ROOT / "deploy" / "Jenkinsfile").read_text()
    assert "AWS_DEFAULT_REGION" in text
    assert "withCredentials" in text and "AmazonWebServicesCredentialsBinding" in text
