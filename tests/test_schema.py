"""lambda-invocation/event.schema.json agrees with the handler's own validation
(tool.parse_event): every example passes both, each invalid event below is refused by both, and
each valid variant below (the lenient forms the handler takes) is accepted by both."""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest
from conftest import ROOT, tool

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


def test_every_privilege_the_handler_knows_is_in_the_schema():
    for privilege in sorted(tool.KNOWN_PRIVILEGES):
        assert schema_accepts(variant(first_user(grant_privileges=privilege.lower()))), privilege


def test_the_schema_uses_no_regex_an_editor_cannot_read():
    """Editors evaluate patterns as ECMA-262 regexes: no inline flags, no lookbehind."""
    patterns = re.findall(r'"pattern": "((?:[^"\\]|\\.)*)"', SCHEMA_PATH.read_text())
    assert patterns
    assert not [p for p in patterns if "(?" in p]
