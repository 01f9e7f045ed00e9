"""lambda-invocation/event.schema.json agrees with the handler's own validation
(tool.read_event): every example passes both, each invalid event below is refused by both, each
valid variant below (the lenient forms the handler takes) is accepted by both, and so is every
generated event, except for the rules the schema's description leaves to the handler, which are
tested as such. SCHEMA_EXAMPLES sets the number of combined events (default 300)."""

from __future__ import annotations

import copy
import json
import os
import re

import jsonschema
import pytest
from conftest import ROOT, tool
from hypothesis import given, settings
from hypothesis import strategies as st

COMBINED_EXAMPLES = int(os.environ.get("SCHEMA_EXAMPLES", "300"))
SCHEMA_PATH = ROOT / "lambda-invocation" / "event.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
EXAMPLES = sorted(
    p for p in (ROOT / "lambda-invocation").glob("*.json") if not p.name.endswith(".schema.json")
)
BASE = json.loads((ROOT / "lambda-invocation" / "seed-example.json").read_text())
MARIADB = json.loads((ROOT / "lambda-invocation" / "mariadb-seed-example.json").read_text())


def variant(change) -> dict:
    """The seed example, changed by `change(event)` (which edits it in place)."""
    event = copy.deepcopy(BASE)
    change(event)
    return event


def handler_accepts(event) -> bool:
    try:
        tool.parse_event(event)
    except tool.InvalidEvent:
        return False
    return True


def schema_accepts(event) -> bool:
    return VALIDATOR.is_valid(event)


def first_user(**keys):
    def change(event):
        event["users"][0].update(keys)

    return change


def drop_user_key(key):
    def change(event):
        del event["users"][0][key]

    return change


def top(**keys):
    def change(event):
        event.update(keys)

    return change


INVALID = {
    "a typo in a top-level key": top(databse_name="airflow"),
    "a typo in a user key": first_user(grant_dll=True),
    "a typo in a rotation key": top(rotation={"enable": True}),
    "a bad boolean (word)": top(dry_run="maybe"),
    "a bad boolean (number)": first_user(grant_ddl=2),
    "a bad boolean (typo)": first_user(rotate_password="yess"),
    "a null boolean": top(verify_logins=None),
    "a missing db_user": drop_user_key("db_user"),
    "an empty db_user": first_user(db_user=""),
    "an unknown engine": top(db_engine="oracle"),
    "an unknown action": first_user(action="drop"),
    "no users (empty list)": top(users=[]),
    "no users (key missing)": lambda event: event.pop("users"),
    "users not a list": top(users={"db_user": "a"}),
    "a user not an object": top(users=["app"]),
    "a missing secret_name": lambda event: event.pop("secret_name"),
    "a none database_name": top(database_name="None"),
    "a create without user_secret_name": drop_user_key("user_secret_name"),
    "a bad secret name": first_user(user_secret_name="has spaces"),
    "reassign_to on a create": first_user(reassign_to="someone"),
    "keep_account on a create": first_user(keep_account=False),
    "keep_account not a boolean": lambda event: event["users"][2].update(
        action="delete", keep_account="maybe"
    ),
    "an unknown ssl_mode": top(ssl_mode="verify_full"),
    "a port out of range": top(rds_port=70000),
    "a port that is not a number": top(rds_port="abc"),
    "a recovery window of 3 days": top(secret_recovery_days=3),
    "a tag the tool sets": top(secret_tags={"managed-by": "me"}),
    "a tag that is not a string": top(secret_tags={"team": 1}),
    "rotation days 0": top(rotation={"days": 0}),
    "rotation schedule and days": top(rotation={"schedule": "rate(10 days)", "days": 10}),
    "a rotation window of 25h": top(rotation={"duration": "25h"}),
    "a rotation function that is not an ARN": top(rotation={"lambda_arn": "my-function"}),
    "rotation not an object": top(rotation=True),
    "an unknown privilege": first_user(grant_privileges="SELECT,SELEKT"),
    "privileges not strings": first_user(grant_privileges=[1]),
    "an account host with a quote": first_user(host="a'b"),
    "no schemas": top(schemas=[]),
    "schemas repeated": top(schemas=["a", "a"]),
    "an unknown auth": first_user(auth="token"),
    "auth not a string": first_user(auth=None),
    "an IAM user updated": first_user(auth="iam", action="update"),
    "an IAM user given a new password": first_user(auth="iam", rotate_password="Yes"),
    "an IAM user with its own rotation": first_user(auth="iam", rotation={"days": 7}),
    "an IAM user with reassign_to": first_user(auth="iam", reassign_to="someone"),
    "a writes pace of 0": top(secrets_writes_per_second=0),
    "a reads pace above 10,000": top(secrets_reads_per_second=10_001),
    "a pace as a string": top(secrets_writes_per_second="5"),
    "a pace as a boolean": top(secrets_reads_per_second=True),
}

VALID = {
    "engine in another case": top(db_engine="PostgreSQL"),
    "an aurora engine": top(db_engine="aurora-postgresql"),
    "booleans as words in any case": first_user(grant_ddl="YES", rotate_password="False"),
    "booleans as 0 and 1": top(dry_run=1, verify_logins=0),
    "privileges with blanks and case": first_user(grant_privileges=" select , Insert,,"),
    "privileges as a list with ALL PRIVILEGES": first_user(grant_privileges=["all privileges"]),
    "a delete without a secret, reassigning": lambda event: event["users"][2].update(
        action=" Delete ", user_secret_name=None, reassign_to="airflow-rw-ddl"
    ),
    "a delete from this database only": lambda event: event["users"][2].update(
        action="delete", keep_account="true"
    ),
    "none-ish optional values": top(rds_host="", kms_key_id=None, ssl_mode="none"),
    "a port as a string": top(rds_port="5432"),
    "a recovery window of 0": top(secret_recovery_days=0),
    "rotation with a null days and a schedule": top(
        rotation={"schedule": "rate(12 hours)", "days": None, "duration": "4h"}
    ),
    "rotation off": top(rotation={"enabled": "no"}),
    "a user's own rotation": first_user(
        rotation={
            "lambda_arn": "arn:aws:lambda:us-east-1:123456789012:function:rotate",
            "days": 7,
            "rotate_immediately": True,
        }
    ),
    "no $schema at all": lambda event: event.pop("$schema"),
    "auth in another case": first_user(auth=" Password "),
    "an IAM user without a secret name": lambda event: event["users"][2].update(
        auth="IAM", user_secret_name=None
    ),
    "an IAM user turning rotation off": first_user(auth="iam", rotation={"enabled": "false"}),
    "an IAM user among users the event rotates": lambda event: (
        event.update(rotation={"days": 30}),
        event["users"][2].update(auth="iam"),
    ),
    "a delete declared iam": lambda event: event["users"][2].update(
        action="delete", auth="iam", rotate_password=True
    ),
    "a fleet's share of the paces": top(
        secrets_writes_per_second=6.25, secrets_reads_per_second=10
    ),
    "null paces": top(secrets_writes_per_second=None, secrets_reads_per_second=None),
    "an account host pattern": lambda event: (
        event.update(MARIADB),
        event["users"][0].update(host="10.0.%"),
    ),
}


def test_the_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_example_refers_to_the_schema_and_passes_both(path):
    event = json.loads(path.read_text())
    assert event["$schema"] == "./event.schema.json"
    assert (path.parent / event["$schema"]).resolve() == SCHEMA_PATH
    assert list(VALIDATOR.iter_errors(event)) == []
    assert tool.parse_event(event).users


@pytest.mark.parametrize("name", INVALID)
def test_an_invalid_event_is_refused_by_both(name):
    event = variant(INVALID[name])
    assert not schema_accepts(event), f"the schema accepts {name}"
    assert not handler_accepts(event), f"the handler accepts {name}"


@pytest.mark.parametrize("name", VALID)
def test_a_lenient_but_valid_event_is_accepted_by_both(name):
    event = variant(VALID[name])
    assert list(VALIDATOR.iter_errors(event)) == []
    assert handler_accepts(event)


def test_the_schema_names_exactly_the_handlers_keys():
    defs = SCHEMA["$defs"]
    assert set(SCHEMA["properties"]) == tool.TOP_KEYS
    assert set(defs["user"]["properties"]) == tool.USER_KEYS
    assert set(defs["rotation"]["properties"]) == tool.ROTATION_KEYS
    assert set(SCHEMA["required"]) == {"secret_name", "database_name", "users"}


@pytest.mark.parametrize("engine", sorted(tool.ENGINES))
def test_every_engine_name_the_handler_knows_is_in_the_schema(engine):
    assert schema_accepts(variant(top(db_engine=engine.upper())))


@pytest.mark.parametrize("engine", ["postgres", "mysql", "mariadb", None])
def test_the_schema_takes_exactly_the_engines_privileges(engine):
    """Each privilege the handler knows, alone, in lower case: accepted by the schema exactly
    when the handler accepts it for that engine (any, when the event names none)."""
    for privilege in sorted(tool.KNOWN_PRIVILEGES):
        event = variant(first_user(grant_privileges=privilege.lower()))
        if engine:
            event["db_engine"] = engine
        else:
            del event["db_engine"]
        assert schema_accepts(event) == handler_accepts(event), (engine, privilege)


def test_the_schema_uses_no_regex_an_editor_cannot_read():
    """Editors evaluate patterns as ECMA-262 regexes: no inline flags, no lookbehind, no named
    groups; a lookahead (?!...) and (?:...) are ECMA-262."""
    patterns = re.findall(r'"pattern": "((?:[^"\\]|\\.)*)"', SCHEMA_PATH.read_text())
    assert patterns
    assert not [p for p in patterns if re.search(r"\(\?[^!:]", p)]


def test_every_pattern_ends_where_the_text_ends_in_python_too():
    """Python's $ matches before a final newline, ECMA-262's does not. A pattern ends with
    $(?!\\n), or its last part takes a newline anyway (trailing blanks, [^\\u0000]*)."""
    patterns = re.findall(r'"pattern": "((?:[^"\\]|\\.)*)"', SCHEMA_PATH.read_text())
    takes_a_newline = re.compile(r"(\\\\s\*\)?\*?|\[\^[^\]n]*\][*+])\$\Z")
    loose = [p for p in patterns if p.endswith("$") and not takes_a_newline.search(p)]
    assert not loose
    assert len([p for p in patterns if p.endswith("$(?!\\\\n)")]) >= 6


@pytest.mark.parametrize(
    "change",
    [
        first_user(user_secret_name="x\n"),
        top(rotation={"schedule": "rate(10 days)\n"}),
        top(rotation={"lambda_arn": "arn:aws:lambda:us-east-1:123456789012:function:f\n"}),
        top(rotation={"duration": "2h\n"}),
        first_user(host="h\n"),
        top(secret_tags={"team": "x\n"}),
    ],
    ids=["user_secret_name", "schedule", "lambda_arn", "duration", "host", "tag"],
)
def test_a_trailing_newline_is_refused_by_both(change):
    event = variant(change)
    if "host" in event["users"][0]:
        event["db_engine"] = "mariadb"
    assert not schema_accepts(event)
    assert not handler_accepts(event)


# ---------------------------------------------------------------------------------------------
# Generated events: the schema and the handler agree on everything the schema claims to check.
#
# Each value below is one the handler or AWS treats at a boundary (a trailing newline, 5432.0,
# the 46th tag, rate(3 hours), a NUL). Every value is tried alone on a valid event, so that
# agreement on accepting or refusing the event is agreement on that one field; then hypothesis
# combines them. The handler refuses what the schema accepts only for the rules the schema's
# description lists as the handler's alone (HANDLER_ONLY); the schema never refuses what the
# handler accepts.
# ---------------------------------------------------------------------------------------------

ARN = "arn:aws:lambda:us-east-1:123456789012:function:rotate"
NAMES = ["a", "b", "c", "a_clone", "pg_x", "rds_x", "Root", "public", "x" * 64, "x" * 81]
NAMES += ["é" * 40, "trailing ", "\U0001f600", "a\n", "current_user"]
TEXTS = ["x", "", " ", "none", " NULL ", "x\n", "a\x00b", "\ud800", "é", 5, None, [], True]
BOOLEANS = [True, False, 0, 1, 0.0, 1.0, 2, 0.5, "yes", "YES", " no ", "yes\n", "yess", ""]
BOOLEANS += ["1", "0", "true", "False", None, [], "none"]
MOST_TAGS = {f"k{i}": "v" for i in range(tool.TAGS_MAX)}

FIELDS: dict[str, list] = {
    "rds_host": TEXTS,
    "kms_key_id": TEXTS,
    "database_name": [*TEXTS, "x" * 65, "a\\b"],
    "region": ["us-east-1", " us-east-1 ", "us-east-1\n", "nowhere", "US-EAST-1", "cn-north-1"]
    + ["us-gov-west-1", "eu-central-100", "", None, "none", 5, "u-east-1"],
    "rds_port": [5432, 5432.0, 5432.5, "5432", " 5432 ", "5432\n", "05432", "0", 0, 65535]
    + [65536, 65535.0, "65536", "", None, True, "５", -1, "000001", "5432.0", float("nan")],
    "db_engine": [*tool.ENGINES, "POSTGRES", " mysql ", "mysql\n", "postgress", "", None, 5]
    + ["none", "Aurora-MySQL"],
    "dry_run": BOOLEANS,
    "verify_logins": BOOLEANS,
    "move_secrets": BOOLEANS,
    "secret_name": ["m", "", " ", "none", "a" * 2048, "a" * 2049, " " + "a" * 2048, "a\tb"]
    + ["a\x7fb", "a\u200bb", "rds!db-1", 5, None, "x\n", " x "],
    "schemas": [["public"], [], ["a", "a"], [""], ["a", 5], "public", None, ["a", "b"]],
    "secret_tags": [
        {},
        {"team": "x"},
        MOST_TAGS,
        {**MOST_TAGS, "one": "more"},
        {"aws:x": "1"},
        {"AWS:x": "1"},
        {"managed-by": "x"},
        {"rds-initializer:user": "x"},
        {"rds-initializer:other": "x"},
        {"k": 1},
        {"": "v"},
        {"k" * 128: "v"},
        {"k" * 129: "v"},
        {"k": "v" * 256},
        {"k": "v" * 257},
        {"k\n": "v"},
        {"k": "v\n"},
        {"k!": "v"},
        {"é": "ü"},
        {"k": ""},
        None,
        [],
        "x",
    ],
    "secret_recovery_days": [0, 0.0, 7, 7.0, 30, 31, 6, 1, True, "7", None, 7.5],
    "ssl_mode": ["require", " require ", "require\n", "verify-full", "disable", "verify_full"]
    + ["", "none", None, 5, "REQUIRE"],
    "$schema": ["./event.schema.json", "", 5, None, "x\n"],
}
ROTATION_FIELDS: dict[str, list] = {
    "enabled": BOOLEANS,
    "rotate_immediately": BOOLEANS,
    "lambda_arn": [ARN, ARN + "\n", ARN + ":live", ARN + ":$LATEST", "my-function", None, "", 5]
    + ["arn:aws-cn:lambda:cn-north-1:123456789012:function:f", ARN.replace("123", "12")],
    "schedule": ["rate(10 days)", "rate(10 days)\n", "rate(1 day)", "rate(3 hours)"]
    + ["rate(4 hours)", "rate(0 days)", "rate(004 hours)", "rate(1 hours)", "cron(0 12 * * ? *)"]
    + ["cron(0 12 ? * MON *)", "cron(0 12 * * * *)", "cron(5 12 * * ? *)", "cron(0 12 ? * ? *)"]
    + ["cron(0 12 * * ? 2025)", "cron(0 */2 * * ? *)", "cron(0 */4 * * ? *)", "cron(0 1,3 * * ? *)"]
    + ["cron(0 25 * * ? *)", "cron(0 12 * *)", "cron(0  12 * * ? *)", "cron(0 12 * * ? *)\n"]
    + ["cron(0 12 1? * ? *)", "weekly", None, "", 5],
    "days": [1, 1000, 1001, 0, 30.0, 7.5, "30", True, None, -1],
    "duration": ["1h", "24h", "25h", "0h", "01h", "2h\n", "2", "100h", None, "", 5, "4h", "12h"],
}
USER_FIELDS: dict[str, list] = {
    "db_user": [*NAMES, "", None, 5, "a\x00"],
    "user_secret_name": ["s", "s-a/b+c=d.e@f", "has space", "s\n", "x" * 512, "x" * 513, ""]
    + ["arn:aws:secretsmanager:us-east-1:1:secret:s", "arn:\n", None, "none", 5, "sa"],
    "action": ["create", "update", "delete", " Delete ", "drop", "DELETE\n", "", 5, None],
    "grant_ddl": BOOLEANS,
    "rotate_password": BOOLEANS,
    "grant_privileges": ["SELECT", "select, insert", "ALL", "all privileges", "SELEC", "DROP"]
    + ["MAINTAIN", "TRUNCATE", "CREATE VIEW", "create   view", "SELECT,,", "", None, [], [1]]
    + [["select", "ALL PRIVILEGES"], ["SELEC"], "SELECT\n", "SHOW VIEW", 5, "none", "INDEX"],
    "grantor": [*NAMES, "", None, "none", 5],
    "reassign_to": [*NAMES, "", None, "none", 5],
    "keep_account": BOOLEANS,
    "host": ["%", "10.0.%", "a'b", "a b", "a\n", "", "x" * 255, "x" * 256, "a@b", "é", "HOST"]
    + [None, 5, "10.0.0.0/255.0.0.0", "\x7f"],
    "rotation": [None, "none", {"enabled": False}, {"days": 7}, True, {"colour": 1}],
    "auth": ["password", "iam", " IAM ", "iam\n", "Password", "token", "", None, 5, "none"],
}

SCHEMA_DESCRIPTION = SCHEMA["description"]

# What JSON Schema cannot say, each as the schema's description names it and as the handler's
# problems word it. The handler may refuse an event the schema accepts for these alone.
HANDLER_ONLY = {
    "user names are distinct": r"is declared more than once",
    "user secrets are distinct": r"is used by more than one user",
    "no user is its own grantor": r"cannot be its own grantor",
    "no user reassigns to itself": r"cannot reassign its objects to itself",
    "no grantor is deleted while its grantees stay": r"stays but its grantor",
    "no user is declared with its rotation clone": r"is the rotation clone of user",
    "no grantor cycles": r"grantor cycle",
    "the engine's limits and reserved names for user and database names": r"is longer than"
    r"|is reserved|ends with a blank|Basic Multilingual Plane|is not a valid .* database name",
    "TRUNCATE on MySQL/MariaDB needs DROP": r"has no TRUNCATE privilege",
    "the needs of the engine's AWS rotation function": r"rotation through the AWS rotation",
    "a cron() schedule's hours": r"schedule cron\(.*: (AWS rotates at most|hours are 0 to 23)",
    "a window that fits its schedule": r"duration .* (is longer than the interval|runs past mid)",
    "text that is not Unicode (a lone surrogate)": r"lone surrogate",
}


def handler_problems(event) -> list[str]:
    try:
        _, problems = tool.read_event(event)
    except tool.InvalidEvent as error:
        return error.problems
    return problems


def disagreement(event) -> str | None:
    """What the two disagree on, or None."""
    schema_errors = [e.message for e in VALIDATOR.iter_errors(event)]
    problems = handler_problems(event)
    if schema_errors and not problems:
        return f"the schema refuses what the handler accepts: {schema_errors[0]:.200}"
    unexplained = [p for p in problems if not any(re.search(r, p) for r in HANDLER_ONLY.values())]
    if unexplained and not schema_errors:
        return f"the schema accepts what the handler refuses: {unexplained[0]:.200}"
    return None


def bases() -> list[dict]:
    """Valid events of two users (the second granted by the first): PostgreSQL, MariaDB, and
    with the engine left to the master secret."""
    events = []
    for example, engine in ((BASE, "postgres"), (MARIADB, "mariadb"), (BASE, None)):
        event = copy.deepcopy(example)
        event["users"] = event["users"][:2]
        if engine is None:
            del event["db_engine"]
        events.append(event)
    return events


def one_change_events():
    """Each boundary value alone, on each base event; rotation values once at each level
    (they are engine-neutral)."""
    for base_index, base in enumerate(bases()):
        for key, values in FIELDS.items():
            for value in values:
                yield f"{base_index}:{key}={value!r:.40}", {**base, key: value}
        for key, values in USER_FIELDS.items():
            for value in values:
                event = copy.deepcopy(base)
                event["users"][1][key] = value
                yield f"{base_index}:users[1].{key}={value!r:.40}", event
    for key, values in ROTATION_FIELDS.items():
        for value in values:
            event = {**bases()[0], "rotation": {key: value}}
            yield f"rotation.{key}={value!r:.40}", event
            event = copy.deepcopy(bases()[0])
            event["users"][1]["rotation"] = {key: value}
            yield f"users[1].rotation.{key}={value!r:.40}", event


def test_the_schema_and_the_handler_agree_on_each_boundary_value():
    found = [f"{name}: {d}" for name, event in one_change_events() if (d := disagreement(event))]
    assert not found, "\n".join(found)


# One event per rule the schema leaves to the handler: the schema accepts it, the handler
# refuses it for that rule.
HANDLER_ONLY_EXAMPLES = {
    "user names are distinct": lambda e: e["users"].append(
        {**e["users"][1], "user_secret_name": "o"}
    ),
    "user secrets are distinct": lambda e: e["users"][1].update(
        user_secret_name=e["users"][0]["user_secret_name"]
    ),
    "no user is its own grantor": lambda e: e["users"][1].update(grantor=e["users"][1]["db_user"]),
    "no user reassigns to itself": lambda e: e["users"][1].update(
        action="delete", reassign_to=e["users"][1]["db_user"]
    ),
    "no grantor is deleted while its grantees stay": lambda e: e["users"][0].update(
        action="delete"
    ),
    "no user is declared with its rotation clone": lambda e: e["users"][1].update(
        db_user=e["users"][0]["db_user"] + "_clone"
    ),
    "no grantor cycles": lambda e: e["users"][0].update(grantor=e["users"][1]["db_user"]),
    "the engine's limits and reserved names for user and database names": lambda e: e["users"][
        1
    ].update(db_user="pg_app"),
    "TRUNCATE on MySQL/MariaDB needs DROP": lambda e: (
        e.update(db_engine="mysql"),
        e["users"][1].update(grant_privileges="SELECT,TRUNCATE"),
    ),
    "the needs of the engine's AWS rotation function": lambda e: (
        e.update(db_engine="mariadb", rotation={"days": 7}),
        e["users"][1].update(host="10.0.%"),
    ),
    "a cron() schedule's hours": lambda e: e.update(rotation={"schedule": "cron(0 */2 * * ? *)"}),
    "a window that fits its schedule": lambda e: e.update(
        rotation={"schedule": "rate(4 hours)", "duration": "5h"}
    ),
    "text that is not Unicode (a lone surrogate)": lambda e: e.update(kms_key_id="\ud800"),
}


def test_each_rule_left_to_the_handler_is_named_in_the_schemas_description():
    assert set(HANDLER_ONLY_EXAMPLES) == set(HANDLER_ONLY)
    for rule in HANDLER_ONLY:
        assert rule in SCHEMA_DESCRIPTION


@pytest.mark.parametrize("rule", HANDLER_ONLY_EXAMPLES)
def test_a_rule_left_to_the_handler_is_checked_by_the_handler_alone(rule):
    event = bases()[0]
    HANDLER_ONLY_EXAMPLES[rule](event)
    problems = handler_problems(event)
    assert list(VALIDATOR.iter_errors(event)) == []
    assert problems and all(re.search(HANDLER_ONLY[rule], p) for p in problems), problems


@st.composite
def combined_events(draw):
    """A base event with a few boundary values at once: top-level, in users (some of them
    added, named from a small pool so that duplicates, grantors and cycles occur) and in a
    rotation."""
    event = copy.deepcopy(draw(st.sampled_from(bases())))
    for key in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=3)):
        event[key] = draw(st.sampled_from(FIELDS[key]))
    for _ in range(draw(st.integers(0, 2))):
        event["users"].append(
            {
                "db_user": draw(st.sampled_from(NAMES[:4])),
                "user_secret_name": draw(st.sampled_from(["s1", "s2", "s3"])),
            }
        )
    for _ in range(draw(st.integers(0, 3))):
        user = draw(st.sampled_from(event["users"]))
        key = draw(st.sampled_from(sorted(USER_FIELDS)))
        user[key] = draw(st.sampled_from(USER_FIELDS[key]))
    if draw(st.booleans()):
        rotation = {}
        for key in draw(st.lists(st.sampled_from(sorted(ROTATION_FIELDS)), max_size=3)):
            rotation[key] = draw(st.sampled_from(ROTATION_FIELDS[key]))
        if draw(st.booleans()):
            event["rotation"] = rotation
        else:
            draw(st.sampled_from(event["users"]))["rotation"] = rotation
    return event


@settings(max_examples=COMBINED_EXAMPLES, deadline=None, database=None)
@given(event=combined_events())
def test_the_schema_and_the_handler_agree_on_combined_values(event):
    assert disagreement(event) is None
