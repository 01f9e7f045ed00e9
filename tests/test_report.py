"""Sections 8 and 1, the report and the entry points: what Jenkins and a person at a terminal see.
Passwords never appear in a report, a log line or an error message. What does not depend on
the engine is written once and runs on PostgreSQL (14 to 18) and on MariaDB."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from conftest import REPORT_KEYS, SEED, USER_REPORT_KEYS, tool, user


def all_passwords(db) -> list[str]:
    names = [s["Name"] for s in db.sm.list_secrets()["SecretList"]]
    return [db.secret(n)["password"] for n in names if "password" in db.secret(n)]


def test_the_report_names_every_user_and_its_secret(db):
    report = db.invoke(db.seed_event())

    assert set(report) == REPORT_KEYS
    assert (report["engine"], report["database"]) == (db.ENGINE, "airflow")
    ro = report["users"][2]
    assert set(ro) == USER_REPORT_KEYS
    assert ro["db_user"] == "airflow-ro-dml" and ro["action"] == "create"
    assert ro["secret"]["name"] == SEED["users"][2]["user_secret_name"]
    assert ro["secret"]["arn"].startswith("arn:aws:secretsmanager:")
    assert ro["secret"]["result"] == "created" and ro["rotation"] == "unchanged"
    assert ro["result"] == "created" and "secret created" in ro["changes"]


def test_no_password_in_the_report_or_the_logs(db, capsys):
    report = db.invoke(db.seed_event())
    db.invoke(
        db.event([user("airflow-ro-dml", SEED["users"][2]["user_secret_name"], action="update")])
    )
    dry = db.invoke(db.event([user("another")], dry_run=True))

    logged = capsys.readouterr().out
    text = json.dumps([report, dry]) + logged
    for password in all_passwords(db) + [db.master_password]:
        assert password not in text
    lines = [json.loads(line) for line in logged.splitlines()]
    assert len(lines) >= 9 and {line["request_id"] for line in lines} == {"test"}
    assert {"start", "planned", "done"} <= {line["message"] for line in lines}


def test_every_applied_statement_and_secret_write_has_one_audit_line(db, capsys):
    planned = db.invoke(db.seed_event(dry_run=True))["sql"]  # one statement per step
    capsys.readouterr()
    report = db.invoke(db.seed_event())

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    applied = [line for line in lines if line["message"] == "applied"]
    assert len(applied) == len(planned)
    assert all(line["level"] == "INFO" and line["database"] == "airflow" for line in applied)
    ro_changes = [
        line["change"]
        for line in applied
        if line["users"] == ["airflow-ro-dml"] and not line.get("record")  # the tool's own
    ]
    assert ro_changes and all(c in report["users"][2]["changes"] for c in ro_changes)
    assert all("sql" not in line for line in applied)  # what, whom and where; never the SQL
    writes = [line for line in lines if line["message"] == "aws"]
    assert [line["call"] for line in writes].count("create_secret") == 3
    assert {line["secret"] for line in writes} == {u["user_secret_name"] for u in SEED["users"]}


def test_the_command_line_prints_the_report_and_exits_0(db):
    done = db.cli(db.seed_event())

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["changed"] is True  # standard output is the report alone
    assert json.loads(db.cli(db.seed_event()).stdout)["changed"] is False


def test_the_command_line_dry_run_flag(db):
    done = db.cli(db.seed_event(), "--dry-run")

    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "dry_run"
    assert "airflow-rw-ddl" not in db.user_names()


def test_the_command_line_exits_2_on_an_invalid_event_and_lists_every_problem(db):
    done = db.cli({**db.seed_event(), "colour": "red", "dry_run": "maybe"})

    assert done.returncode == 2 and done.stdout == ""
    assert "unknown key 'colour'" in done.stderr and "dry_run must be a boolean" in done.stderr


def test_event_and_state_problems_are_reported_together(db):
    event = db.seed_event(colour="red")
    event["users"][1]["grantor"] = "nobody-by-that-name"

    done = db.cli(event)

    assert done.returncode == 2
    assert "unknown key 'colour'" in done.stderr
    assert "grantor 'nobody-by-that-name' does not exist" in done.stderr
    assert "airflow-rw-ddl" not in db.user_names()


def test_the_command_line_exits_1_when_applying_fails(db):
    done = db.cli(db.seed_event(rds_port=1))

    assert done.returncode == 1
    assert "cannot connect" in done.stderr and db.master_password not in done.stderr


def test_the_handler_raises_so_that_lambda_reports_a_function_error(db):
    with pytest.raises(tool.InvalidEvent):
        db.invoke({**db.seed_event(), "users": []})
    with pytest.raises(tool.ApplyError, match="cannot connect"):
        db.invoke(db.seed_event(rds_port=1))


def test_with_too_little_lambda_time_left_it_stops_before_writing_anything(db):
    nearly_over = SimpleNamespace(aws_request_id="late", get_remaining_time_in_millis=lambda: 9000)

    with pytest.raises(tool.ApplyError, match="stopped before writing the secrets"):
        tool.lambda_handler(db.seed_event(), nearly_over)

    assert "airflow-rw-ddl" not in db.user_names()
    assert len(db.sm.list_secrets()["SecretList"]) == 1


def test_verify_full_needs_a_ca_bundle(db):
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DB_SSL_CA", raising=False)
        with pytest.raises(tool.InvalidEvent, match="DB_SSL_CA"):
            db.invoke(db.seed_event(ssl_mode="verify-full"))


def test_redaction_covers_what_a_driver_error_may_echo():
    tool.REDACT.add("s3cr3t-value")
    assert tool.REDACT("LINE 1: ALTER ROLE \"u\" PASSWORD 's3cr3t-value'") == (
        "LINE 1: ALTER ROLE \"u\" PASSWORD '***'"
    )


def test_postgresql_requires_tls_by_default_and_refuses_a_server_without_it(rds):
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


def test_a_report_over_the_limit_is_compacted_and_its_details_are_logged(db, capsys, monkeypatch):
    event = db.event([user(f"app{i}", grant_privileges="SELECT") for i in range(30)], dry_run=True)
    full = db.invoke(event)
    size = len(json.dumps(full))
    capsys.readouterr()
    monkeypatch.setattr(tool, "REPORT_LIMIT_BYTES", size // 3)  # the users fit, not the SQL

    compact = db.invoke(event)

    assert len(json.dumps(compact)) <= size // 3 < compact["compacted"]["full_bytes"]
    assert compact["users"][0] == {"db_user": "app0", "action": "create", "result": "created"}
    assert compact["user_results"] == {"created": 30} and compact["changed"] is True
    assert compact["sql"] == full["sql"][: len(compact["sql"])]
    assert 0 < compact["sql_omitted"] == len(full["sql"]) - len(compact["sql"])
    assert "in the function's log" in compact["warnings"][-1]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    logged_users = [line for line in lines if line["message"] == "user"]
    assert [line["db_user"] for line in logged_users] == [f"app{i}" for i in range(30)]
    assert logged_users[0]["changes"] == full["users"][0]["changes"]
    logged_sql = [s for line in lines if line["message"] == "sql" for s in line["statements"]]
    assert logged_sql == full["sql"]


def test_compaction_keeps_the_counts_when_even_a_line_per_user_is_too_much():
    users = [
        {"db_user": f"u{i}", "action": "create", "result": "created", "changes": ["x" * 50]}
        for i in range(100)
    ]
    report = {"status": "success", "changed": True, "users": users, "warnings": [], "stats": {}}

    assert tool.fit_report(report, limit=10**6) is report  # under the limit: as it is
    small = tool.fit_report(report, limit=2_000)

    assert len(json.dumps(small)) <= 2_000
    assert small["users"] == [] and small["users_omitted"] == 100
    assert small["user_results"] == {"created": 100} and small["compacted"]["limit_bytes"] == 2_000
