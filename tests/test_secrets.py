"""Section 2, Secrets Manager: the reads a run makes, through moto's server over HTTP."""

from __future__ import annotations

import json

import pytest
from lambda_function import InvalidEvent, Secrets, has_every_type, parse_event, resolve_target


def test_reading_the_states_costs_one_describe_per_secret_and_one_batch_read_per_twenty(
    secretsmanager,
):
    for i in range(45):
        secretsmanager.create_secret(
            Name=f"s{i}", SecretString=json.dumps({"username": f"u{i}", "password": "p"})
        )
    client = Secrets("us-east-1")

    states = client.read_states([f"s{i}" for i in range(45)] + ["missing"])

    assert client.calls == {"DescribeSecret": 46, "BatchGetSecretValue": 3}
    assert states["s7"].value == {"username": "u7", "password": "p"}
    assert states["missing"].exists is False


def test_a_secret_scheduled_for_deletion_is_seen_as_such(secretsmanager):
    secretsmanager.create_secret(Name="old", SecretString="{}")
    secretsmanager.delete_secret(SecretId="old", RecoveryWindowInDays=7)

    state = Secrets("us-east-1").read_states(["old"])["old"]

    assert state.exists and state.scheduled_for_deletion and state.value is None


def test_a_value_that_is_not_json_marks_the_secret_as_somebody_elses(secretsmanager):
    secretsmanager.create_secret(Name="plain", SecretString="hunter2")
    assert Secrets("us-east-1").read_states(["plain"])["plain"].foreign_value


def test_generated_passwords_avoid_the_characters_that_break_connection_strings(secretsmanager):
    client = Secrets("us-east-1")

    passwords = client.random_passwords(300)

    assert len(passwords) == len(set(passwords)) == 300
    assert all(len(p) == 32 and not set(p) & set(":/@\"'\\ ") for p in passwords)
    assert all(has_every_type(p) for p in passwords)
    assert client.calls["GetRandomPassword"] <= 4  # 4096 characters a call, not one a password


def event(**keys):
    return parse_event(
        {
            "secret_name": "m",
            "database_name": "app",
            "users": [{"db_user": "u", "user_secret_name": "s"}],
            **keys,
        }
    )


def test_the_master_secret_fills_in_what_the_event_leaves_out():
    target = resolve_target(
        event(),
        {
            "username": "admin",
            "password": "pw",
            "host": "h",
            "port": "6543",
            "engine": "aurora-postgresql",
        },
        "arn:m",
    )
    assert (target.host, target.port, target.engine, target.master_user) == (
        "h",
        6543,
        "postgres",
        "admin",
    )


def test_the_event_wins_over_the_master_secret():
    target = resolve_target(
        event(rds_host="e", rds_port=7000, db_engine="postgresql"),
        {"username": "a", "password": "p", "host": "h", "port": 1},
        "arn",
    )
    assert (target.host, target.port) == ("e", 7000)


def test_an_rds_managed_master_secret_needs_host_and_engine_from_the_event():
    with pytest.raises(InvalidEvent) as caught:
        resolve_target(event(), {"username": "a", "password": "p"}, "arn")
    assert caught.value.problems == [
        "rds_host is required (the master secret has no host)",
        "db_engine is required (the master secret names no engine it knows)",
    ]


def test_an_engine_known_only_from_the_master_secret_is_checked_then():
    user = {"db_user": "u" * 40, "user_secret_name": "s", "grant_privileges": "MAINTAIN"}
    parsed = parse_event({"secret_name": "m", "database_name": "app", "users": [user]})
    with pytest.raises(InvalidEvent) as caught:
        resolve_target(
            parsed, {"username": "a", "password": "p", "engine": "mysql", "host": "h"}, "x"
        )
    assert caught.value.problems == [
        f"user {'u' * 40!r}: db_user {'u' * 40!r} is longer than mysql's 32 characters",
        f"user {'u' * 40!r}: grant_privileges: MAINTAIN is not a mysql table privilege "
        "(allowed: SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, REFERENCES, INDEX, ALTER, "
        "CREATE VIEW, SHOW VIEW, TRIGGER, ALL)",
    ]


def test_the_default_port_follows_the_engine():
    target = resolve_target(
        event(rds_host="h", db_engine="mariadb"), {"username": "a", "password": "p"}, "x"
    )
    assert (target.engine, target.port) == ("mariadb", 3306)
