"""The deployment helper: deploy/invoke.sh must fail a pipeline when the function failed,
although `aws lambda invoke` exits 0 then. A stand-in `aws` plays the CLI."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import ROOT

FAKE_AWS = """#!/usr/bin/env bash
# Records the payload, writes the function's answer to the last argument, prints FunctionError.
for arg; do case "$arg" in fileb://*) cp "${arg#fileb://}" "$RECORD";; esac; done
echo "$ANSWER" > "${@: -1}"
echo "$FUNCTION_ERROR"
"""


@pytest.fixture
def fake_aws(tmp_path):
    (tmp_path / "aws").write_text(FAKE_AWS)
    (tmp_path / "aws").chmod(0o755)
    return tmp_path


def invoke(fake_aws, function_error: str, answer: dict, *args: str):
    env = {
        **os.environ,
        "PATH": f"{fake_aws}:{os.environ['PATH']}",
        "RECORD": str(fake_aws / "payload"),
        "ANSWER": json.dumps(answer),
        "FUNCTION_ERROR": function_error,
    }
    event = ROOT / "lambda-invocation" / "seed-example.json"
    done = subprocess.run(
        [str(ROOT / "deploy" / "invoke.sh"), "rds-initializer", str(event), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    return done, json.loads((fake_aws / "payload").read_text())


def test_a_successful_invocation_prints_the_report_and_exits_0(fake_aws):
    done, payload = invoke(fake_aws, "None", {"status": "success", "changed": False})

    assert done.returncode == 0
    assert json.loads(done.stdout) == {"status": "success", "changed": False}
    assert payload["users"][0]["db_user"] == "airflow-rw-ddl" and "dry_run" not in payload


def test_a_function_error_fails_the_pipeline(fake_aws):
    done, _ = invoke(fake_aws, "Unhandled", {"errorMessage": "invalid event: ..."})

    assert done.returncode == 1
    assert "invalid event" in done.stdout and "Unhandled" in done.stderr


def test_dry_run_adds_the_flag_to_the_event(fake_aws):
    _, payload = invoke(fake_aws, "None", {"status": "dry_run"}, "--dry-run")
    assert payload["dry_run"] is True
