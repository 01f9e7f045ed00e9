"""The function's environment is checked at the start of every run (issue 12 item 4): a bad
value is invalid input (exit 2 from the command line) naming the variable, found before
anything is read or written; a bad LOG_LEVEL never breaks the import."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from conftest import SEED, tool
from test_timeouts import run_cli

SEED_USERS = {"airflow-rw-ddl", "airflow-rw-dml", "airflow-ro-dml"}


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("DB_CONNECT_TIMEOUT", "abc", "DB_CONNECT_TIMEOUT must be a number of seconds"),
        ("DB_CONNECT_TIMEOUT", "0", "DB_CONNECT_TIMEOUT must be a number of seconds above 0"),
        ("DB_CONNECT_TIMEOUT", "1e3", "DB_CONNECT_TIMEOUT must be a number of seconds"),
        ("DB_LOCK_TIMEOUT", "-1", "DB_LOCK_TIMEOUT must be a number of seconds"),
        ("DB_LOCK_TIMEOUT", "901", "at most 900"),
        ("LOG_LEVEL", "verbose", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR"),
        ("DB_SSL_MODE", "prefer", "DB_SSL_MODE must be one of require, verify-full, disable"),
        ("DB_SSL_CA", "/nonexistent/ca.pem", "DB_SSL_CA: '/nonexistent/ca.pem' is not a readable"),
        ("ROTATION_LAMBDA_ARN_MYSQL", "my-function", "ROTATION_LAMBDA_ARN_MYSQL must be a Lambda"),
        ("ROTATION_USERNAME_LIMIT_MYSQL", "16.5", "ROTATION_USERNAME_LIMIT_MYSQL must be a whole"),
        ("ROTATION_USERNAME_LIMIT_MYSQL", "33", "from 1 to 32"),
    ],
)
def test_a_bad_environment_variable_is_invalid_input_and_touches_nothing(
    rds, monkeypatch, variable, value, says
):
    monkeypatch.setenv(variable, value)

    with pytest.raises(tool.InvalidEvent) as invalid:
        rds.invoke(rds.seed_event())

    assert says in str(invalid.value)
    assert not SEED_USERS & rds.roles()
    assert [s["Name"] for s in rds.sm.list_secrets()["SecretList"]] == [rds.secret_name]


def test_every_bad_variable_is_reported_at_once_with_the_events_problems(rds, monkeypatch):
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "2,5")
    monkeypatch.setenv("LOG_LEVEL", "loud")
    event = rds.seed_event(unknown_key=1)

    with pytest.raises(tool.InvalidEvent) as invalid:
        rds.invoke(event)

    assert len(invalid.value.problems) == 3
    assert "unknown key 'unknown_key'" in str(invalid.value)


def test_the_command_line_exits_2_for_a_bad_connect_timeout_and_a_bad_log_level(rds, tmp_path):
    """LOG_LEVEL=verbose does not break the import (it would, before the run could say so)."""
    status, stderr, _ = run_cli(
        rds.seed_event(), tmp_path, DB_CONNECT_TIMEOUT="2.5s", LOG_LEVEL="verbose"
    )

    assert status == 2, stderr
    assert "environment variable DB_CONNECT_TIMEOUT must be a number of seconds" in stderr
    assert "'2.5s'" in stderr
    assert "environment variable LOG_LEVEL must be one of" in stderr
    assert "invalid literal" not in stderr and "Traceback" not in stderr
    assert not SEED_USERS & rds.roles()
    assert [s["Name"] for s in rds.sm.list_secrets()["SecretList"]] == [SEED["secret_name"]]


def test_decimal_timeouts_are_seconds(db, monkeypatch):
    """DB_CONNECT_TIMEOUT=2.5 and DB_LOCK_TIMEOUT=0.5 are valid: PostgreSQL's libpq counts
    whole seconds (2.5 becomes 3), the rest takes them as they are."""
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "2.5")
    monkeypatch.setenv("DB_LOCK_TIMEOUT", "0.5")

    report = db.invoke(db.seed_event())

    assert [u["result"] for u in report["users"]] == ["created"] * 3
    assert db.invoke(db.seed_event())["changed"] is False


def test_libpq_gets_whole_seconds_and_at_least_two():
    target = tool.Target("postgres", "h", 5432, "d", "m", "p", "arn", "disable")
    for given, whole in (("2.5", 3), ("1", 2), ("10", 10)):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DB_CONNECT_TIMEOUT", given)
            target = replace(target, settings=tool.Settings.read(os.environ))
            assert tool.POSTGRES.connect_args(target, "u", "p")["connect_timeout"] == whole


@pytest.mark.parametrize(
    ("variable", "value"), [("DB_CONNECT_TIMEOUT", "2.5s"), ("LOG_LEVEL", "verbose")]
)
def test_one_bad_variable_is_one_line_naming_it(rds, tmp_path, variable, value):
    status, stderr, _ = run_cli(rds.seed_event(), tmp_path, **{variable: value})

    assert status == 2, stderr
    # the log lines (JSON) of the reading that found the other problems, if any, and one line
    (line,) = [line for line in stderr.strip().splitlines() if not line.startswith("{")]
    assert line.startswith(f"invalid event: environment variable {variable} ")
    assert not SEED_USERS & rds.roles()
