"""Section 4, the event: parsing and validation, without any server."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, SEED, tool
from lambda_function import (
    InvalidEvent,
    bind_engine,
    my_user_account,
    parse_event,
    resolve_target,
)


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    return caught.value.problems


def with_users(*users: dict, **top) -> dict:
    return {
        "secret_name": "master",
        "database_name": "app",
        "db_engine": "postgres",
        "users": list(users),
        **top,
    }


def test_the_seed_example_parses_as_written():
    event = parse_event(SEED)

    ddl, dml, ro = event.users
    assert (ddl.name, ddl.ddl, ddl.grantor) == ("airflow-rw-ddl", True, None)
    assert ddl.privileges == {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"}
    assert (dml.ddl, dml.grantor, dml.privileges) == (
        False,
        "airflow-rw-ddl",
        {"SELECT", "INSERT", "UPDATE", "DELETE"},
    )
    assert ro.privileges == {"SELECT"} and ro.action == "create"
    assert event.schemas == ("public",) and event.engine == "postgres"
    assert event.kms_key_id == SEED["kms_key_id"] and event.ssl_mode == "require"


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, True),
        (False, False),
        ("true", True),
        ("FALSE", False),
        ("Yes", True),
        ("no", False),
        ("1", True),
        ("0", False),
        (1, True),
        (0, False),
    ],
)
def test_bool_ish_values(value, expected):
    assert (
        parse_event(with_users({"db_user": "u", "user_secret_name": "s", "grant_ddl": value}))
        .users[0]
        .ddl
        is expected
    )


@pytest.mark.parametrize("value", [None, "", "None", "none", "null", "NULL"])
def test_none_ish_grantor_means_no_grantor(value):
    event = parse_event(with_users({"db_user": "u", "user_secret_name": "s", "grantor": value}))
    assert event.users[0].grantor is None


@pytest.mark.parametrize(
    "value, expected",
    [
        ("select, Insert ,SELECT", {"SELECT", "INSERT"}),
        (["delete", " update "], {"DELETE", "UPDATE"}),
        ("ALL", set(tool.PG_TABLE_PRIVILEGES)),
        ("all privileges", set(tool.PG_TABLE_PRIVILEGES)),
        ("", set()),
        (None, set()),
    ],
)
def test_privileges_are_normalized(value, expected):
    raw = with_users({"db_user": "u", "user_secret_name": "s", "grant_privileges": value})
    assert parse_event(raw).users[0].privileges == expected


def test_every_problem_is_reported_at_once():
    raw = with_users(
        {"db_user": "a", "user_secret_name": "s1", "grant_privileges": "SELECT,DROP TABLE"},
        {"db_user": "b", "user_secret_name": "s2", "grant_ddl": "maybe", "colour": "red"},
        {"db_user": "c", "action": "remove"},
        secret_nam="typo",
        dry_run="perhaps",
        secret_recovery_days=3,
    )

    problems = "\n".join(problems_of(raw))

    for expected in (
        "unknown key 'secret_nam'",
        "dry_run must be a boolean",
        "secret_recovery_days must be 0 or 7..30",
        "unknown privilege DROP TABLE",
        "user 'b': unknown key 'colour'",
        "grant_ddl must be a boolean",
        "action must be one of create, update, delete",
    ):
        assert expected in problems


def test_required_keys():
    problems = problems_of({"users": []})
    assert problems == [
        "secret_name is required",
        "database_name is required",
        "users must be a non-empty list",
    ]


def test_a_user_secret_is_required_except_for_delete():
    assert "user_secret_name is required" in problems_of(with_users({"db_user": "u"}))[0]
    assert parse_event(with_users({"db_user": "u", "action": "delete"})).users[0].deleting


@pytest.mark.parametrize(
    "name",
    [
        "PUBLIC",
        "public",
        "pg_read_all_data",
        "rds_superuser",
        "rdsadmin",
        "rds_iam",
        "x" * 64,
        "é" * 32,
        "nul\x00",
    ],
)
def test_names_never_managed_are_refused(name):
    problems = problems_of(with_users({"db_user": name, "user_secret_name": "s"}))
    assert any(word in problems[0] for word in ("reserved", "longer", "NUL"))


def test_a_63_byte_name_is_fine():
    parse_event(with_users({"db_user": "x" * 63, "user_secret_name": "s"}))


def test_duplicates_are_refused():
    raw = with_users(
        {"db_user": "u", "user_secret_name": "s"}, {"db_user": "u", "user_secret_name": "s"}
    )
    assert problems_of(raw) == [
        "user 'u' is declared more than once",
        "secret 's' is used by more than one user",
    ]


def test_a_grantor_cycle_is_refused():
    raw = with_users(
        {"db_user": "a", "user_secret_name": "1", "grantor": "b"},
        {"db_user": "b", "user_secret_name": "2", "grantor": "c"},
        {"db_user": "c", "user_secret_name": "3", "grantor": "a"},
    )
    assert problems_of(raw) == ["grantor cycle: a -> b -> c -> a"]


def test_a_user_cannot_be_its_own_grantor():
    raw = with_users({"db_user": "a", "user_secret_name": "1", "grantor": "a"})
    assert problems_of(raw) == ["user 'a' cannot be its own grantor"]


def test_deleting_a_grantor_whose_grantees_stay_is_refused():
    raw = with_users(
        {"db_user": "owner", "action": "delete"},
        {"db_user": "reader", "user_secret_name": "2", "grantor": "owner"},
    )
    assert problems_of(raw) == ["user 'reader' stays but its grantor 'owner' is being deleted"]


def test_deleting_a_grantor_with_its_grantees_is_fine_and_grantees_go_first():
    event = parse_event(
        with_users(
            {"db_user": "owner", "action": "delete"},
            {"db_user": "reader", "action": "delete", "grantor": "owner"},
        )
    )
    assert [u.name for u in reversed(tool.grantor_order(event.users))] == ["reader", "owner"]


def test_grantors_come_before_their_grantees():
    event = parse_event(
        with_users(
            {"db_user": "c", "user_secret_name": "3", "grantor": "b"},
            {"db_user": "b", "user_secret_name": "2", "grantor": "a"},
            {"db_user": "a", "user_secret_name": "1"},
        )
    )
    assert [u.name for u in tool.grantor_order(event.users)] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("given", "engine"),
    [
        ("mysql", "mysql"),
        ("aurora-mysql", "mysql"),
        ("MariaDB", "mariadb"),
        ("postgresql", "postgres"),
    ],
)
def test_engine_names_become_the_names_the_aws_rotation_functions_accept(given, engine):
    event = parse_event(with_users({"db_user": "u", "user_secret_name": "s"}, db_engine=given))
    assert event.engine == engine


def test_the_seed_example_is_valid_on_mariadb_where_truncate_means_the_drop_it_needs():
    ddl, dml, ro = parse_event({**SEED, "db_engine": "mariadb"}).users
    assert ddl.privileges == {"SELECT", "INSERT", "UPDATE", "DELETE", "DROP"} and ddl.ddl
    assert dml.privileges == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert ro.privileges == {"SELECT"} and my_user_account(ro) == ("airflow-ro-dml", "%")


def test_on_mysql_truncate_without_drop_is_refused_rather_than_widened_silently():
    raw = with_users({"db_user": "u", "user_secret_name": "s", "grant_privileges": "TRUNCATE"})
    assert problems_of({**raw, "db_engine": "mysql"}) == [
        "user 'u': mysql has no TRUNCATE privilege; TRUNCATE TABLE needs DROP: declare DROP "
        "(or grant_ddl) to allow it"
    ]


def test_all_on_mysql_is_every_table_privilege_of_mysql():
    raw = with_users({"db_user": "u", "user_secret_name": "s", "grant_privileges": "ALL"})
    user = parse_event({**raw, "db_engine": "mysql"}).users[0]
    assert user.privileges == set(tool.MY_TABLE_PRIVILEGES)


@pytest.mark.parametrize(
    ("engine", "privilege"), [("mysql", "MAINTAIN"), ("postgres", "CREATE VIEW")]
)
def test_a_privilege_of_the_other_engine_is_refused_naming_the_allowed_ones(engine, privilege):
    raw = with_users(
        {"db_user": "u", "user_secret_name": "s", "grant_privileges": privilege}, db_engine=engine
    )
    (problem,) = problems_of(raw)
    assert f"{privilege} is not a" in problem and "allowed: SELECT, INSERT" in problem


@pytest.mark.parametrize(
    ("engine", "name", "refused"),
    [
        ("mysql", "u" * 32, False),
        ("mysql", "u" * 33, True),
        ("mariadb", "u" * 80, False),
        ("mariadb", "u" * 81, True),
        ("mysql", "mysql.sys", True),
        ("mariadb", "mariadb.sys", True),
        ("mysql", "rdsadmin", True),
        ("mysql", "pg_thing", False),
        ("mysql", "trailing ", True),
    ],
)
def test_mysql_names_follow_the_engines_limits_and_system_accounts(engine, name, refused):
    raw = with_users({"db_user": name, "user_secret_name": "s"}, db_engine=engine)
    if refused:
        assert len(problems_of(raw)) == 1
    else:
        assert parse_event(raw).users[0].name == name


def test_postgresql_only_keys_are_refused_on_mysql():
    raw = with_users(
        {"db_user": "u", "action": "delete", "reassign_to": "v"},
        db_engine="mariadb",
        schemas=["public"],
    )
    assert problems_of(raw) == [
        "schemas apply only to PostgreSQL (mariadb grants on the database)",
        "user 'u': reassign_to applies only to PostgreSQL",
    ]


@pytest.mark.parametrize("host", ["%", "10.0.%", "app.example.com", "10.0.0.0/255.255.0.0"])
def test_a_mysql_account_host_may_be_a_pattern_or_netmask(host):
    raw = with_users({"db_user": "u", "user_secret_name": "s", "host": host}, db_engine="mysql")
    assert my_user_account(parse_event(raw).users[0]) == ("u", host)


@pytest.mark.parametrize("host", ["", "a'b", "a b", "a\\b", 7])
def test_a_mysql_account_host_with_quotes_or_blanks_is_refused(host):
    raw = with_users({"db_user": "u", "user_secret_name": "s", "host": host}, db_engine="mysql")
    assert len(problems_of(raw)) == 1


def test_an_account_host_is_checked_by_the_engine_once_the_master_secret_names_it():
    """Only the host's type is engine-neutral; its form is the engine's rule, checked once the
    engine is known (here from the master secret), and the host lower-cased as it is stored."""
    raw = with_users({"db_user": "u", "user_secret_name": "s", "host": "A b"}, db_engine=None)
    event = parse_event(raw)
    master = {"username": "m", "password": "p", "host": "h", "engine": "mariadb"}
    assert resolve_target(event, master, "arn")[1] == [
        "user 'u': host 'A b' may not contain quotes, backslashes or blanks"
    ]
    assert resolve_target(event, {**master, "engine": "postgres"}, "arn")[1] == [
        "user 'u': host applies only to MySQL/MariaDB users"
    ]
    event = parse_event({**raw, "users": [{**raw["users"][0], "host": "App.Example"}]})
    target, problems = resolve_target(event, master, "arn")
    assert not problems and target is not None
    [user] = bind_engine(event, target.dialect).users
    assert my_user_account(user) == ("u", "app.example")


FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:rotate-db-users"


def rotation_of(own: dict | None = None, **top) -> tool.Rotation | None:
    """The effective rotation of a single user whose entry has `own` rotation (None: no key)."""
    entry = {"db_user": "u", "user_secret_name": "s"}
    if own is not None:
        entry["rotation"] = own
    return parse_event(with_users(entry, **top)).users[0].rotation


def test_without_rotation_anywhere_the_secrets_rotation_is_left_as_it_is():
    assert rotation_of() is None


def test_rotation_defaults_to_enabled_every_30_days_not_rotating_at_once():
    assert rotation_of({}) == tool.Rotation(enabled=True, days=30, rotate_immediately=False)
    assert rotation_of({}).rules == {"AutomaticallyAfterDays": 30}


def test_the_event_level_rotation_is_every_users_default():
    event = parse_event(
        with_users(
            {"db_user": "a", "user_secret_name": "1"},
            {"db_user": "b", "user_secret_name": "2", "rotation": None},
            rotation={"lambda_arn": FUNCTION, "days": 7},
        )
    )
    assert {u.rotation for u in event.users} == {
        tool.Rotation(enabled=True, lambda_arn=FUNCTION, days=7)
    }


def test_a_users_rotation_replaces_the_events_whole():
    rotation = rotation_of(
        {"schedule": "rate(12 hours)"}, rotation={"lambda_arn": FUNCTION, "days": 7}
    )
    assert rotation == tool.Rotation(enabled=True, schedule="rate(12 hours)")


def test_disabling_needs_nothing_else():
    assert rotation_of({"enabled": False}).enabled is False
    assert rotation_of({"enabled": "no", "days": 7}).enabled is False  # kept to turn back on


def test_a_delete_ignores_rotation_since_deleting_removes_the_secret():
    event = parse_event(
        with_users(
            {"db_user": "a", "action": "delete", "rotation": {"days": 7}},
            {"db_user": "b", "action": "delete"},
            rotation={"days": 1},
        )
    )
    assert [u.rotation for u in event.users] == [None, None]
    bad = with_users({"db_user": "a", "action": "delete", "rotation": {"days": 0}})
    assert problems_of(bad) == ["user 'a': rotation: days must be from 1 to 1000, not 0"]


@pytest.mark.parametrize(
    "rotation, rules",
    [
        ({"days": 1}, {"AutomaticallyAfterDays": 1}),
        ({"days": 1000, "duration": "24h"}, {"AutomaticallyAfterDays": 1000, "Duration": "24h"}),
        ({"schedule": "rate(4 hours)"}, {"ScheduleExpression": "rate(4 hours)"}),
        ({"schedule": "rate(1 day)"}, {"ScheduleExpression": "rate(1 day)"}),
        (
            {"schedule": "rate(10 days)", "duration": "3h"},
            {"ScheduleExpression": "rate(10 days)", "Duration": "3h"},
        ),
        (
            {"schedule": "cron(0 16 1,15 * ? *)", "duration": "2h"},
            {"ScheduleExpression": "cron(0 16 1,15 * ? *)", "Duration": "2h"},
        ),
        (
            {"schedule": "cron(0 8 ? * MON-FRI *)"},
            {"ScheduleExpression": "cron(0 8 ? * MON-FRI *)"},
        ),
        (
            {"schedule": "cron(0 */6 * * ? *)", "duration": "6h"},
            {"ScheduleExpression": "cron(0 */6 * * ? *)", "Duration": "6h"},
        ),
        (
            {"schedule": "cron(0 2,22 L * ? *)", "duration": "2h"},
            {"ScheduleExpression": "cron(0 2,22 L * ? *)", "Duration": "2h"},
        ),
        ({"schedule": None, "days": None}, {"AutomaticallyAfterDays": 30}),
    ],
)
def test_valid_schedules_become_the_rotation_rules_sent_to_aws(rotation, rules):
    assert rotation_of(rotation).rules == rules


@pytest.mark.parametrize(
    "arn",
    [
        FUNCTION,
        f"{FUNCTION}:live",
        f"{FUNCTION}:$LATEST",
        "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:rotate",
        "arn:aws-cn:lambda:cn-north-1:123456789012:function:rotate_1",
    ],
)
def test_a_lambda_function_arn_with_or_without_qualifier_in_any_partition(arn):
    assert rotation_of({"lambda_arn": arn}).lambda_arn == arn


@pytest.mark.parametrize(
    "value, expected",
    [
        ({"enabled": "yes", "rotate_immediately": "1"}, (True, True)),
        ({"enabled": 0}, (False, False)),
        ({"rotate_immediately": True}, (True, True)),
    ],
)
def test_rotation_flags_are_bool_ish(value, expected):
    rotation = rotation_of(value)
    assert (rotation.enabled, rotation.rotate_immediately) == expected


@pytest.mark.parametrize(
    "rotation, problem",
    [
        ("yes", "rotation: must be an object"),
        ({"enable": True}, "rotation: unknown key 'enable'"),
        (
            {"enabled": "maybe"},
            "rotation: enabled must be a boolean (true/false/yes/no/1/0), not 'maybe'",
        ),
        (
            {"rotate_immediately": 2},
            "rotation: rotate_immediately must be a boolean (true/false/yes/no/1/0), not 2",
        ),
        ({"days": 7, "schedule": "rate(7 days)"}, "rotation: schedule and days exclude each other"),
        ({"days": 0}, "rotation: days must be from 1 to 1000, not 0"),
        ({"days": 1001}, "rotation: days must be from 1 to 1000, not 1001"),
        ({"days": "30"}, "rotation: days must be a whole number of days, not '30'"),
        ({"days": True}, "rotation: days must be a whole number of days, not True"),
        ({"schedule": 30}, "rotation: schedule must be a string, not 30"),
        ({"schedule": "weekly"}, "rotation: schedule must be rate(N hours), rate(N days) or cron("),
        ({"schedule": "rate(30 minutes)"}, "rotation: schedule must be rate(N hours)"),
        ({"schedule": "rate(3 hours)"}, "AWS rotates at most every 4 hours"),
        ({"schedule": "rate(0 days)"}, "AWS rotates at most every 4 hours"),
        ({"schedule": "cron(0 16 1 * ?)"}, "cron() takes six fields separated by single blanks"),
        ({"schedule": "cron(30 16 1 * ? *)"}, "the minutes field must be 0"),
        ({"schedule": "cron(0 16 1 * ? 2030)"}, "the year field must be *"),
        ({"schedule": "cron(0 16 1 * MON *)"}, "exactly one of day-of-month and day-of-week"),
        ({"schedule": "cron(0 16 ? * ? *)"}, "exactly one of day-of-month and day-of-week"),
        ({"schedule": "cron(0 * * * ? *)"}, "AWS rotates at most every 4 hours"),
        ({"schedule": "cron(0 1,3 * * ? *)"}, "AWS rotates at most every 4 hours"),
        ({"schedule": "cron(0 24 * * ? *)"}, "hours are 0 to 23"),
        ({"duration": "90m"}, "rotation: duration must be a whole number of hours from 1h to 24h"),
        ({"duration": "0h"}, "duration must be a whole number of hours from 1h to 24h"),
        ({"duration": "25h"}, "duration must be a whole number of hours from 1h to 24h"),
        ({"duration": 2}, "duration must be a whole number of hours from 1h to 24h, not 2"),
        (
            {"schedule": "rate(4 hours)", "duration": "5h"},
            "duration 5h is longer than the interval of schedule rate(4 hours)",
        ),
        (
            {"schedule": "cron(0 0,6 * * ? *)", "duration": "7h"},
            "duration 7h is longer than the interval of schedule cron(0 0,6 * * ? *)",
        ),
        (
            {"schedule": "cron(0 22 * * ? *)", "duration": "4h"},
            "duration 4h runs past midnight UTC after the 22:00 window",
        ),
        (
            {"lambda_arn": "rotate-db-users"},
            "rotation: lambda_arn must be a Lambda function ARN "
            "(arn:aws:lambda:REGION:ACCOUNT:function:NAME), not 'rotate-db-users'",
        ),
        (
            {"lambda_arn": "arn:aws:lambda:us-east-1:123:function:x"},
            "lambda_arn must be a Lambda function ARN",
        ),
        (
            {"lambda_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x"},
            "lambda_arn must be a Lambda function ARN",
        ),
    ],
)
def test_invalid_rotation_is_refused_naming_what_is_wrong(rotation, problem):
    at_event = problems_of(with_users({"db_user": "u", "user_secret_name": "s"}, rotation=rotation))
    at_user = problems_of(
        with_users({"db_user": "u", "user_secret_name": "s", "rotation": rotation})
    )

    assert len(at_event) == 1 and at_event[0].startswith("rotation: ") and problem in at_event[0]
    assert at_user == [f"user 'u': {at_event[0]}"]


def test_every_rotation_problem_is_reported_at_once():
    raw = with_users(
        {"db_user": "u", "user_secret_name": "s", "rotation": {"days": 0, "colour": "red"}},
        rotation={"enabled": "maybe", "schedule": "cron(0 12 * * * *)"},
    )
    assert problems_of(raw) == [
        "rotation: enabled must be a boolean (true/false/yes/no/1/0), not 'maybe'",
        "rotation: schedule cron(0 12 * * * *): exactly one of day-of-month and day-of-week "
        "must be ?",
        "user 'u': rotation: unknown key 'colour'; rotation's keys are days, duration, "
        "enabled, lambda_arn, rotate_immediately, schedule",
        "user 'u': rotation: days must be from 1 to 1000, not 0",
    ]


@pytest.mark.parametrize(
    "rotation, interval",
    [
        ({}, "rate(30 days)"),
        ({"days": 7}, "rate(7 days)"),
        ({"schedule": "rate(7 days)"}, "rate(7 days)"),
        ({"schedule": "rate(1 day)"}, "rate(1 days)"),
        ({"schedule": "rate(06 hours)"}, "rate(6 hours)"),
        ({"schedule": "cron(0 16 1,15 * ? *)"}, "cron(0 16 1,15 * ? *)"),
    ],
)
def test_days_and_a_daily_rate_are_one_interval(rotation, interval):
    assert rotation_of(rotation).interval == interval


@pytest.mark.parametrize("name", ["has space", "semi;colon", "quote'"])
def test_secret_names_outside_the_aws_alphabet_are_refused(name):
    assert "secret name" in problems_of(with_users({"db_user": "u", "user_secret_name": name}))[0]


def test_an_arn_is_a_valid_secret_name():
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf"
    assert parse_event(with_users({"db_user": "u", "user_secret_name": arn})).users[0].secret_name


def tags(count: int) -> dict[str, str]:
    return {f"team-{i}": "x" for i in range(count)}


def test_secret_tags_leave_room_for_the_tools_own_four_under_awss_fifty():
    raw = with_users({"db_user": "u", "user_secret_name": "s"}, secret_tags=tags(46))
    assert len(parse_event(raw).secret_tags) == 46
    raw["secret_tags"] = tags(47)
    assert problems_of(raw) == [
        "secret_tags: at most 46 tags, not 47: AWS allows 50 per secret, and the tool sets 4 "
        "(managed-by, rds-initializer:user, rds-initializer:server, rds-initializer:database)"
    ]


def test_a_secret_carries_at_most_fifty_tags_the_tools_included():
    event = parse_event(with_users({"db_user": "u", "user_secret_name": "s"}, secret_tags=tags(46)))
    target = tool.Target("postgres", "h", 5432, "app", "master", "pw", "arn", "require")
    wanted = tool.wanted_tags(event, target, "u")
    assert len(wanted) == 50 and set(tool.TOOL_TAG_KEYS) <= set(wanted)


@pytest.mark.parametrize(
    "key", ["rds-initializer:user", "rds-initializer:server", "rds-initializer:anything"]
)
def test_secret_tags_may_not_set_the_tools_identity_tags(key):
    raw = with_users({"db_user": "u", "user_secret_name": "s"}, secret_tags={key: "someone"})
    assert problems_of(raw) == [
        f"secret_tags: {key!r} is the tool's own tag: managed-by and rds-initializer:* are set "
        "by it"
    ]


@pytest.mark.parametrize("key", ["aws:team", "AWS:team", "Aws:x"])
def test_secret_tags_may_not_use_aws_keys(key):
    raw = with_users({"db_user": "u", "user_secret_name": "s"}, secret_tags={key: "x"})
    [problem] = problems_of(raw)
    assert problem.startswith(f"secret_tags: {key!r}") and "not starting with aws:" in problem


@pytest.mark.parametrize("value", [5, None, ["x"], {"a": 1}])
def test_schema_must_be_a_string_when_given(value):
    raw = with_users({"db_user": "u", "user_secret_name": "s"}, **{"$schema": value})
    assert problems_of(raw) == ["$schema must be a string: the address of the event's JSON Schema"]


def test_secret_tags_may_not_take_over_managed_by():
    raw = with_users({"db_user": "u", "user_secret_name": "s"}, secret_tags={"managed-by": "me"})
    assert problems_of(raw) == [
        "secret_tags: 'managed-by' is the tool's own tag: managed-by and rds-initializer:* are "
        "set by it"
    ]


def test_host_is_for_mysql_users_only():
    raw = with_users({"db_user": "u", "user_secret_name": "s", "host": "%"})
    assert problems_of(raw) == ["user 'u': host applies only to MySQL/MariaDB users"]


def test_all_is_every_table_privilege_maintain_included():
    raw = with_users({"db_user": "u", "user_secret_name": "s", "grant_privileges": "all"})
    user = parse_event(raw).users[0]
    assert user.all_privileges and "MAINTAIN" in user.privileges


def test_a_user_entry_without_a_name_is_an_error_not_a_crash():
    assert problems_of(with_users({"user_secret_name": "s"})) == [
        "users[0]: db_user must be a non-empty string"
    ]


@pytest.mark.parametrize(
    "path",
    sorted(
        p
        for p in (ROOT / "lambda-invocation").glob("*.json")
        if not p.name.endswith(".schema.json")
    ),
    ids=lambda path: path.name,
)
def test_every_example_event_is_valid(path):
    assert parse_event(json.loads(path.read_text())).users


def test_a_user_and_its_rotation_clone_are_not_declared_as_two_users():
    raw = with_users(
        {"db_user": "app", "user_secret_name": "1"},
        {"db_user": "app_clone", "user_secret_name": "2"},
    )
    assert problems_of(raw) == [
        "user 'app_clone' is the rotation clone of user 'app', which the tool manages together "
        "with it: declare only the user"
    ]
