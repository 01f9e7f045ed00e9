"""Section 5, gathering from Secrets Manager: the reads a run makes, through moto's server over
HTTP, and what they decide about each secret's rotation."""

from __future__ import annotations

import json

import pytest
from lambda_function import (
    DIALECTS,
    Rotation,
    SecretsManager,
    SecretState,
    Settings,
    described_rotation,
    has_every_type,
    parse_event,
    resolve_target,
    rotation_change,
    rotation_function,
    rotation_function_problems,
    rotation_host_problems,
)


def test_reading_the_states_costs_a_list_page_per_hundred_and_a_batch_read_per_twenty(
    secretsmanager,
):
    for i in range(45):
        secretsmanager.create_secret(
            Name=f"s{i}", SecretString=json.dumps({"username": f"u{i}", "password": "p"})
        )
    client = SecretsManager("us-east-1")

    states = client.read_states([f"s{i}" for i in range(45)] + ["missing"])

    # The one secret the list and the batch read do not return is described: it may be new.
    assert client.calls == {"ListSecrets": 1, "BatchGetSecretValue": 3, "DescribeSecret": 1}
    assert states["s7"].value == {"username": "u7", "password": "p"}
    assert states["missing"].exists is False


def test_a_secret_scheduled_for_deletion_is_seen_as_such(secretsmanager):
    secretsmanager.create_secret(Name="old", SecretString="{}")
    secretsmanager.delete_secret(SecretId="old", RecoveryWindowInDays=7)

    state = SecretsManager("us-east-1").read_states(["old"])["old"]

    assert state.exists and state.scheduled_for_deletion and state.value is None


def test_a_value_that_is_not_json_marks_the_secret_as_somebody_elses(secretsmanager):
    secretsmanager.create_secret(Name="plain", SecretString="hunter2")
    assert SecretsManager("us-east-1").read_states(["plain"])["plain"].foreign_value


def test_generated_passwords_avoid_the_characters_that_break_connection_strings(secretsmanager):
    client = SecretsManager("us-east-1")

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
    target, problems = resolve_target(
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
    assert problems == []
    assert (target.host, target.port, target.engine, target.master_user) == (
        "h",
        6543,
        "postgres",
        "admin",
    )


def test_the_event_wins_over_the_master_secret():
    target, problems = resolve_target(
        event(rds_host="e", rds_port=7000, db_engine="postgresql"),
        {"username": "a", "password": "p", "host": "h", "port": 1},
        "arn",
    )
    assert problems == []
    assert (target.host, target.port) == ("e", 7000)


def test_an_rds_managed_master_secret_needs_host_and_engine_from_the_event():
    target, problems = resolve_target(event(), {"username": "a", "password": "p"}, "arn")
    assert target is None
    assert problems == [
        "rds_host is required (the master secret has no host)",
        "db_engine is required (the master secret names no engine it knows)",
    ]


def test_an_engine_known_only_from_the_master_secret_is_checked_then():
    user = {"db_user": "u" * 40, "user_secret_name": "s", "grant_privileges": "MAINTAIN"}
    parsed = parse_event({"secret_name": "m", "database_name": "app", "users": [user]})
    _, problems = resolve_target(
        parsed, {"username": "a", "password": "p", "engine": "mysql", "host": "h"}, "x"
    )
    assert problems == [
        f"user {'u' * 40!r}: db_user {'u' * 40!r} is longer than mysql's 32 characters",
        f"user {'u' * 40!r}: grant_privileges: MAINTAIN is not a mysql table privilege "
        "(allowed: SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, REFERENCES, INDEX, ALTER, "
        "CREATE VIEW, SHOW VIEW, TRIGGER, ALL)",
    ]


def test_the_default_port_follows_the_engine():
    target, _ = resolve_target(
        event(rds_host="h", db_engine="mariadb"), {"username": "a", "password": "p"}, "x"
    )
    assert (target.engine, target.port) == ("mariadb", 3306)


# Rotation: what the secret's DescribeSecret says, what it should say, and who rotates it.

FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:rotate-db-users"
OTHER_FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:other"


def test_what_moto_does_on_rotate_secret_which_the_rotation_tests_rely_on(
    secretsmanager, rotation_function
):
    """moto 5.2 stands in for AWS in the rotation tests; this is how it differs."""
    secretsmanager.create_secret(Name="s", SecretString='{"username": "u"}')
    with pytest.raises(secretsmanager.exceptions.ResourceNotFoundException):
        secretsmanager.rotate_secret(SecretId="s", RotationLambdaARN=OTHER_FUNCTION)
    secretsmanager.create_secret(Name="t", SecretString='{"username": "u"}')
    (current,) = secretsmanager.describe_secret(SecretId="t")["VersionIdsToStages"]

    secretsmanager.rotate_secret(
        SecretId="t",
        RotationLambdaARN=rotation_function,
        RotationRules={"AutomaticallyAfterDays": 30},
        RotateImmediately=False,
    )

    found = secretsmanager.describe_secret(SecretId="t")
    assert (found["RotationEnabled"], found["RotationLambdaARN"]) == (True, rotation_function)
    assert found["RotationRules"] == {"AutomaticallyAfterDays": 30}
    # It runs no function and moves no label, but keeps the testSecret step's AWSPENDING
    # version (a copy of AWSCURRENT), which AWS removes: see Rds.end_test_rotation.
    (pending,) = set(found["VersionIdsToStages"]) - {current}
    assert found["VersionIdsToStages"] == {current: ["AWSCURRENT"], pending: ["AWSPENDING"]}
    # It keeps neither a ScheduleExpression nor a Duration: schedules are tested without it.
    secretsmanager.rotate_secret(
        SecretId="t",
        RotationLambdaARN=rotation_function,
        RotationRules={"ScheduleExpression": "rate(10 days)", "Duration": "2h"},
        RotateImmediately=False,
    )
    assert secretsmanager.describe_secret(SecretId="t")["RotationRules"] == {
        "AutomaticallyAfterDays": 0
    }
    secretsmanager.cancel_rotate_secret(SecretId="t")
    found = secretsmanager.describe_secret(SecretId="t")
    assert (found["RotationEnabled"], found["RotationLambdaARN"]) == (False, rotation_function)


def test_the_secrets_rotation_comes_with_its_description_at_no_extra_call(
    secretsmanager, rotation_function
):
    secretsmanager.create_secret(Name="s", SecretString='{"username": "u"}')
    secretsmanager.rotate_secret(
        SecretId="s",
        RotationLambdaARN=rotation_function,
        RotationRules={"AutomaticallyAfterDays": 7},
        RotateImmediately=False,
    )
    secretsmanager.create_secret(Name="never-rotated", SecretString='{"username": "v"}')
    client = SecretsManager("us-east-1")

    states = client.read_states(["s", "never-rotated"])

    assert states["s"].rotation == Rotation(enabled=True, lambda_arn=rotation_function, days=7)
    assert states["never-rotated"].rotation == Rotation(enabled=False)
    # "s" is described: moto's RotateSecret left an AWSPENDING on it, which is never taken
    # from the list. "never-rotated" comes from the list and the batch read alone.
    assert client.calls == {"ListSecrets": 1, "BatchGetSecretValue": 1, "DescribeSecret": 1}


def secret_described(**found) -> SecretState:
    """A secret whose DescribeSecret answered with these rotation fields."""
    return SecretState(name="s", exists=True, rotation=described_rotation(found))


ON = {"RotationEnabled": True, "RotationLambdaARN": FUNCTION}
DAYS_30 = Rotation(enabled=True, days=30)


@pytest.mark.parametrize(
    "wanted, described, function, change",
    [
        # no rotation in the event: whatever the secret has stays
        (None, {}, None, None),
        (None, {**ON, "RotationRules": {"AutomaticallyAfterDays": 30}}, FUNCTION, None),
        # never rotated, or turned off (AWS keeps the old function and rules then)
        (DAYS_30, {}, FUNCTION, "enable"),
        (
            DAYS_30,
            {**ON, "RotationEnabled": False, "RotationRules": {"AutomaticallyAfterDays": 30}},
            FUNCTION,
            "enable",
        ),
        # the same, however AWS reports it: no call
        (DAYS_30, {**ON, "RotationRules": {"AutomaticallyAfterDays": 30}}, FUNCTION, None),
        (
            DAYS_30,
            {
                **ON,
                "RotationRules": {
                    "AutomaticallyAfterDays": 30,
                    "ScheduleExpression": "rate(30 days)",
                },
            },
            FUNCTION,
            None,
        ),
        (DAYS_30, {**ON, "RotationRules": {"ScheduleExpression": "rate(30 days)"}}, FUNCTION, None),
        (
            Rotation(enabled=True, schedule="rate(30 days)"),
            {**ON, "RotationRules": {"AutomaticallyAfterDays": 30}},
            FUNCTION,
            None,
        ),
        (
            Rotation(enabled=True, schedule="cron(0 16 1,15 * ? *)", duration="2h"),
            {
                **ON,
                "RotationRules": {
                    "AutomaticallyAfterDays": 15,  # computed by AWS: not compared
                    "ScheduleExpression": "cron(0 16 1,15 * ? *)",
                    "Duration": "2h",
                },
            },
            FUNCTION,
            None,
        ),
        (
            Rotation(enabled=True, days=30, rotate_immediately=True),  # not a setting: no call
            {**ON, "RotationRules": {"AutomaticallyAfterDays": 30}},
            FUNCTION,
            None,
        ),
        # something differs: one rotate_secret
        (DAYS_30, {**ON, "RotationRules": {"AutomaticallyAfterDays": 7}}, FUNCTION, "update"),
        (
            DAYS_30,
            {**ON, "RotationRules": {"AutomaticallyAfterDays": 30}},
            OTHER_FUNCTION,
            "update",
        ),
        (
            DAYS_30,
            {**ON, "RotationRules": {"ScheduleExpression": "rate(30 hours)"}},
            FUNCTION,
            "update",
        ),
        (
            Rotation(enabled=True, days=30, duration="2h"),
            {**ON, "RotationRules": {"AutomaticallyAfterDays": 30}},
            FUNCTION,
            "update",
        ),
        (
            DAYS_30,
            {**ON, "RotationRules": {"AutomaticallyAfterDays": 30, "Duration": "2h"}},
            FUNCTION,
            "update",
        ),
        (
            Rotation(enabled=True, schedule="cron(0 16 1,15 * ? *)"),
            {**ON, "RotationRules": {"ScheduleExpression": "cron(0 4 1,15 * ? *)"}},
            FUNCTION,
            "update",
        ),
        # turned off: one cancel_rotate_secret, only when it is on
        (
            Rotation(enabled=False),
            {**ON, "RotationRules": {"AutomaticallyAfterDays": 30}},
            None,
            "disable",
        ),
        (Rotation(enabled=False), {**ON, "RotationEnabled": False}, None, None),
        (Rotation(enabled=False), {}, None, None),
    ],
)
def test_rotate_secret_only_when_the_state_function_or_rules_differ(
    wanted, described, function, change
):
    assert rotation_change(wanted, secret_described(**described), function) == change


def test_a_secret_that_does_not_exist_yet_has_its_rotation_enabled():
    assert rotation_change(DAYS_30, SecretState(name="new"), FUNCTION) == "enable"


ENGINE_VARIABLES = {
    "postgres": "ROTATION_LAMBDA_ARN_POSTGRES",
    "mysql": "ROTATION_LAMBDA_ARN_MYSQL",
    "mariadb": "ROTATION_LAMBDA_ARN_MARIADB",
}


def rotating(*users: dict, **top):
    return parse_event({"secret_name": "m", "database_name": "app", "users": list(users), **top})


@pytest.mark.parametrize("engine", ENGINE_VARIABLES)
def test_the_engines_aws_function_comes_from_the_deployment(engine):
    event = rotating({"db_user": "u", "user_secret_name": "s"}, rotation={})
    variable = ENGINE_VARIABLES[engine]

    assert (
        rotation_function_problems(event, DIALECTS[engine], Settings.read({variable: FUNCTION}))
        == []
    )
    wanted = event.users[0].rotation
    assert (
        rotation_function(wanted, DIALECTS[engine], Settings.read({variable: FUNCTION})) == FUNCTION
    )
    (problem,) = rotation_function_problems(event, DIALECTS[engine], Settings.read({}))
    assert problem.startswith("rotation of 'u' needs a rotation function: give rotation.lambda_arn")
    assert variable in problem and "RotationMultiUser" in problem
    settings = Settings.read({variable: "rotate-db-users"})
    assert rotation_function_problems(event, DIALECTS[engine], settings) == []
    (problem,) = settings.problems  # the settings' problem, reported once
    assert problem.startswith(f"environment variable {variable} must be a Lambda function ARN")


def test_a_function_of_the_events_own_or_no_rotation_needs_no_deployment_setting():
    event = rotating(
        {"db_user": "own", "user_secret_name": "1", "rotation": {"lambda_arn": OTHER_FUNCTION}},
        {"db_user": "off", "user_secret_name": "2", "rotation": {"enabled": False}},
        {"db_user": "left-alone", "user_secret_name": "3"},
        {"db_user": "gone", "action": "delete", "rotation": {}},
    )
    env = {"ROTATION_LAMBDA_ARN_POSTGRES": FUNCTION}

    assert rotation_function_problems(event, DIALECTS["postgres"], Settings.read({})) == []
    assert (
        rotation_function(event.users[0].rotation, DIALECTS["postgres"], Settings.read(env))
        == OTHER_FUNCTION
    )


def test_one_problem_names_every_user_that_needs_the_aws_function():
    event = rotating(
        {"db_user": "a", "user_secret_name": "1"},
        {"db_user": "b", "user_secret_name": "2"},
        {"db_user": "c", "user_secret_name": "3", "rotation": {"lambda_arn": FUNCTION}},
        rotation={"days": 7},
    )
    blank = {"ROTATION_LAMBDA_ARN_POSTGRES": " "}
    (problem,) = rotation_function_problems(event, DIALECTS["postgres"], Settings.read(blank))
    assert problem.startswith("rotation of 'a', 'b' needs a rotation function")


def test_moving_awscurrent_changes_what_a_read_without_a_stage_returns(secretsmanager):
    """As on AWS; moto 5.2.5 needs dev/servers.py's correction for it."""
    secretsmanager.create_secret(Name="s", SecretString='{"username": "u"}')
    first = secretsmanager.describe_secret(SecretId="s")["VersionIdsToStages"]
    (old,) = first
    new = secretsmanager.put_secret_value(
        SecretId="s", SecretString='{"username": "u_clone"}', VersionStages=["AWSPENDING"]
    )["VersionId"]
    secretsmanager.update_secret_version_stage(
        SecretId="s", VersionStage="AWSCURRENT", MoveToVersionId=new, RemoveFromVersionId=old
    )

    (batch,) = secretsmanager.batch_get_secret_value(SecretIdList=["s"])["SecretValues"]
    assert json.loads(batch["SecretString"]) == {"username": "u_clone"}
    assert secretsmanager.get_secret_value(SecretId="s")["VersionId"] == new


def test_a_batch_read_answers_a_secret_without_a_value_in_its_errors(secretsmanager):
    """As on AWS (APIErrorType: each secret it cannot read); moto 5.2.5 fails the whole call
    and needs dev/servers.py's correction for it. CreateSecret tells it from no secret."""
    secretsmanager.create_secret(Name="valueless")
    secretsmanager.create_secret(Name="s", SecretString='{"username": "u"}')

    read = secretsmanager.batch_get_secret_value(SecretIdList=["valueless", "s", "none"])

    assert [item["Name"] for item in read["SecretValues"]] == ["s"]
    assert {e["SecretId"]: e["ErrorCode"] for e in read["Errors"]} == {
        "valueless": "ResourceNotFoundException",
        "none": "ResourceNotFoundException",
    }
    with pytest.raises(secretsmanager.exceptions.ResourceExistsException):
        secretsmanager.create_secret(Name="valueless", SecretString="{}")


@pytest.mark.parametrize(
    ("rds_host", "refused"), [("db.example", False), ("db-alias.example", True), (None, False)]
)
def test_the_aws_function_needs_the_user_secrets_host_to_be_the_masters(rds_host, refused):
    master = {"username": "m", "password": "p", "host": "db.example", "engine": "postgres"}
    event = rotating({"db_user": "u", "user_secret_name": "s"}, rotation={}, rds_host=rds_host)
    target, _ = resolve_target(event, master, "arn")

    problems = rotation_host_problems(event, target, master)

    assert bool(problems) is refused
    if refused:
        assert "is not the master secret's host ('db.example')" in problems[0]
