"""Section 1, the event: parsing and validation, without any server."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, SEED, tool
from lambda_function import InvalidEvent, parse_event


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
        "unknown privilege(s) DROP TABLE",
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
    assert ro.privileges == {"SELECT"} and ro.account == ("airflow-ro-dml", "%")


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
    assert parse_event(raw).users[0].account == ("u", host)


@pytest.mark.parametrize("host", ["", "a'b", "a b", "a\\b", 7])
def test_a_mysql_account_host_with_quotes_or_blanks_is_refused(host):
    raw = with_users({"db_user": "u", "user_secret_name": "s", "host": host}, db_engine="mysql")
    assert len(problems_of(raw)) == 1


def test_rotation_is_refused_clearly_for_now():
    raw = with_users(
        {"db_user": "u", "user_secret_name": "s", "rotation": {"enabled": True}},
        rotation={"enabled": True},
    )
    assert [p for p in problems_of(raw) if "rotation is not supported yet" in p] != []


@pytest.mark.parametrize("name", ["has space", "semi;colon", "quote'"])
def test_secret_names_outside_the_aws_alphabet_are_refused(name):
    assert "secret name" in problems_of(with_users({"db_user": "u", "user_secret_name": name}))[0]


def test_an_arn_is_a_valid_secret_name():
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf"
    assert parse_event(with_users({"db_user": "u", "user_secret_name": arn})).users[0].secret_name


def test_secret_tags_may_not_take_over_managed_by():
    raw = with_users({"db_user": "u", "user_secret_name": "s"}, secret_tags={"managed-by": "me"})
    assert problems_of(raw) == ["secret_tags must not set 'managed-by': the tool sets it"]


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
    "path", sorted((ROOT / "lambda-invocation").glob("*.json")), ids=lambda path: path.name
)
def test_every_example_event_is_valid(path):
    assert parse_event(json.loads(path.read_text())).users
