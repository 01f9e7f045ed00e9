"""Sections 8 and 1, the report and the entry points: what Jenkins and a person at a terminal see.
Passwords never appear in a report, a log line or an error message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from conftest import ROOT, SEED, tool, user

CLI = [sys.executable, str(ROOT / "deploy" / "lambda_function.py")]


def all_passwords(rds) -> list[str]:
    names = [s["Name"] for s in rds.sm.list_secrets()["SecretList"]]
    return [rds.secret(n)["password"] for n in names if "password" in rds.secret(n)]


def test_the_report_names_every_user_and_its_secret(rds):
    report = rds.invoke(rds.seed_event())

    assert set(report) >= {
        "status",
        "dry_run",
        "changed",
        "engine",
        "host",
        "database",
        "duration_ms",
        "users",
        "stats",
    }
    assert (report["engine"], report["database"]) == ("postgres", "airflow")
    ro = report["users"][2]
    assert ro["db_user"] == "airflow-ro-dml" and ro["action"] == "create"
    assert ro["secret"]["name"] == SEED["users"][2]["user_secret_name"]
    assert ro["secret"]["arn"].startswith("arn:aws:secretsmanager:")
    assert ro["secret"]["result"] == "created" and ro["rotation"] == "unchanged"
    assert "create role" in ro["changes"]


def test_no_password_in_the_report_or_the_logs(rds, capsys):
    report = rds.invoke(rds.seed_event())
    rds.invoke(
        rds.event([user("airflow-ro-dml", SEED["users"][2]["user_secret_name"], action="update")])
    )
    dry = rds.invoke(rds.event([user("another")], dry_run=True))

    logged = capsys.readouterr().out
    text = json.dumps([report, dry]) + logged
    for password in all_passwords(rds) + [rds.master_password]:
        assert password not in text
    lines = [json.loads(line) for line in logged.splitlines()]
    assert len(lines) >= 9 and {line["request_id"] for line in lines} == {"test"}
    assert {"start", "planned", "done"} <= {line["message"] for line in lines}


def test_redaction_covers_what_a_driver_error_may_echo():
    tool.REDACT.add("s3cr3t-value")
    assert tool.REDACT("LINE 1: ALTER ROLE \"u\" PASSWORD 's3cr3t-value'") == (
        "LINE 1: ALTER ROLE \"u\" PASSWORD '***'"
    )


def run_cli(rds, event: dict, *args: str, tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    return subprocess.run(
        [*CLI, str(path), *args],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=120,
        check=False,
    )


def test_the_command_line_prints_the_report_and_exits_0(rds, tmp_path):
    done = run_cli(rds, rds.seed_event(), tmp_path=tmp_path)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["changed"] is True  # standard output is the report alone
    assert json.loads(run_cli(rds, rds.seed_event(), tmp_path=tmp_path).stdout)["changed"] is False


def test_the_command_line_dry_run_flag(rds, tmp_path):
    done = run_cli(rds, rds.seed_event(), "--dry-run", tmp_path=tmp_path)

    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "dry_run"
    assert "airflow-rw-ddl" not in rds.roles()


def test_the_command_line_exits_2_on_an_invalid_event_and_lists_every_problem(rds, tmp_path):
    done = run_cli(
        rds, {**rds.seed_event(), "colour": "red", "dry_run": "maybe"}, tmp_path=tmp_path
    )

    assert done.returncode == 2 and done.stdout == ""
    assert "unknown key 'colour'" in done.stderr and "dry_run must be a boolean" in done.stderr


def test_the_command_line_exits_1_when_applying_fails(rds, tmp_path):
    done = run_cli(rds, rds.seed_event(rds_port=1), tmp_path=tmp_path)

    assert done.returncode == 1
    assert "cannot connect" in done.stderr and rds.master_password not in done.stderr


def test_the_handler_raises_so_that_lambda_reports_a_function_error(rds):
    with pytest.raises(tool.InvalidEvent):
        rds.invoke({**rds.seed_event(), "users": []})
    with pytest.raises(tool.ApplyError, match="cannot connect"):
        rds.invoke(rds.seed_event(rds_port=1))


def test_with_too_little_lambda_time_left_it_stops_before_writing_anything(rds):
    nearly_over = SimpleNamespace(aws_request_id="late", get_remaining_time_in_millis=lambda: 9000)

    with pytest.raises(tool.ApplyError, match="stopped before writing the secrets"):
        tool.lambda_handler(rds.seed_event(), nearly_over)

    assert "airflow-rw-ddl" not in rds.roles()
    assert len(rds.sm.list_secrets()["SecretList"]) == 1


def test_verify_full_needs_a_ca_bundle(rds, monkeypatch):
    monkeypatch.delenv("DB_SSL_CA", raising=False)
    with pytest.raises(tool.InvalidEvent, match="DB_SSL_CA"):
        rds.invoke(rds.seed_event(ssl_mode="verify-full"))


def test_require_is_the_default_and_a_server_without_tls_is_refused(rds):
    event = rds.seed_event()
    del event["ssl_mode"]
    with pytest.raises(tool.ApplyError, match="SSL"):
        rds.invoke(event)


def test_debug_logs_show_the_sql_with_passwords_blanked(rds, capsys):
    logged, executed = rds.invoke_at_debug(rds.seed_event(), capsys)

    assert any(s.startswith('CREATE ROLE "airflow-rw-ddl"') for s in executed)
    assert all("SCRAM" not in s for s in executed)
    for password in all_passwords(rds):
        assert password not in logged
