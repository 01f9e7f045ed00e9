"""Generated events (random keys, types, sizes, quotes, NUL, non-ASCII, SQL fragments) against
a real PostgreSQL and moto: every run ends in a report or in InvalidEvent (exit status 2),
and InvalidEvent leaves every role, grant and secret as it was.

The generator keeps what only decides where to connect (host, port, database, engine, TLS)
either right or of a wrong type: a valid but wrong host is a failure to connect (exit 1),
which is no invalid input. PROPERTY_EXAMPLES sets the number of examples (default 200)."""

from __future__ import annotations

import os

from conftest import tool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "200"))

FRAGMENTS = [
    "'; DROP TABLE t; --",
    '"; DROP ROLE x; --',
    "\\",
    "%s",
    "%(x)s",
    "`",
    "\x00",
    "é",
    "日本",
    "\U0001f600",
    "\u202e",
    " ",
    "_clone",
    "pg_",
    "rds",
    "public",
    "none",
    "ALL",
    "current_user",
    "$$",
    "*/",
]

texts = st.one_of(
    st.text(max_size=12),
    st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=4).map("".join),
    st.sampled_from(["app", "reader", "owner", "app_clone", "Reader", "x" * 70, ""]),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), texts)
garbage = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=6,
)
names = st.one_of(st.sampled_from(["app", "reader", "owner", "a-b", 'q"uote', "ÅÉ"]), texts)
privileges = st.one_of(
    st.sampled_from(["SELECT", "SELECT,INSERT", "ALL", "select, update ,DELETE", "", "TRUNCATE"]),
    st.lists(st.sampled_from(["SELECT", "INSERT", "MAINTAIN", "DROP", "x"]), max_size=3),
    garbage,
)
bools = st.one_of(st.sampled_from([True, False, "yes", "NO", "1", 0]), garbage)
secret_names = st.one_of(st.sampled_from(["s-app", "s-reader", "s-owner", "s/x+y=z@"]), texts)

USER_FIELDS = {
    "db_user": names,
    "user_secret_name": secret_names,
    "action": st.one_of(st.sampled_from(["create", "update", "delete", "Delete", "drop"]), garbage),
    "grant_ddl": bools,
    "grant_privileges": privileges,
    "grantor": st.one_of(names, st.none()),
    "rotate_password": bools,
    "rotation": st.one_of(st.just({"enabled": False}), st.just({"enabled": "maybe"}), garbage),
    "host": garbage,
    "reassign_to": names,
}


@st.composite
def user_entries(draw):
    keys = draw(st.sets(st.sampled_from(sorted(USER_FIELDS)), max_size=6))
    entry = {key: draw(USER_FIELDS[key]) for key in keys | {"db_user"}}
    if draw(st.booleans()):
        entry.setdefault("user_secret_name", draw(secret_names))
    if draw(st.integers(0, 9)) == 0:
        entry[draw(texts)] = draw(garbage)  # an unknown key, or a known one again
    return entry


@st.composite
def events(draw, base: dict):
    event = dict(base)
    event["users"] = draw(st.one_of(st.lists(user_entries(), max_size=5), garbage))
    # Keys that only decide where to connect: right, or of a type that cannot be right.
    for key, wrong in (
        ("rds_port", st.one_of(st.sampled_from(["５", "²", "x", -1, 70000, 5.5]), st.none())),
        ("database_name", st.one_of(st.integers(), st.none(), st.lists(texts, max_size=1))),
        ("db_engine", st.sampled_from(["oracle", 1, ""])),
        ("ssl_mode", st.sampled_from(["prefer", 3, "verify-full"])),
        ("region", st.sampled_from(["us east 1", 5, "EU"])),
        ("secret_name", st.one_of(st.just("no-such-master"), st.integers(), texts)),
    ):
        if draw(st.integers(0, 15)) == 0:
            event[key] = draw(wrong)
    for key, value in (
        ("dry_run", bools),
        ("verify_logins", bools),
        ("secret_tags", st.one_of(st.dictionaries(texts, texts, max_size=2), garbage)),
        ("secret_recovery_days", st.one_of(st.sampled_from([0, 7, 30, 31]), garbage)),
        ("schemas", st.one_of(st.just(["public"]), st.lists(texts, max_size=2), garbage)),
        ("rotation", st.one_of(st.just({"enabled": False}), garbage)),
        ("kms_key_id", st.one_of(st.integers(), st.lists(st.none(), max_size=1))),
    ):
        if draw(st.integers(0, 6)) == 0:
            event[key] = draw(value)
    if draw(st.integers(0, 15)) == 0:
        event[draw(texts)] = draw(garbage)
    return event


SNAPSHOT = """
SELECT a.rolname, a.rolcanlogin::text || a.rolcreaterole || a.rolcreatedb, a.rolpassword,
       a.rolvaliduntil::text, r.rolconfig::text
FROM pg_authid a JOIN pg_roles r ON r.oid = a.oid
UNION ALL SELECT relname, relacl::text, NULL, NULL, NULL FROM pg_class
          WHERE relnamespace = 'public'::regnamespace
UNION ALL SELECT nspname, nspacl::text, NULL, NULL, NULL FROM pg_namespace
UNION ALL SELECT datname, datacl::text, NULL, NULL, NULL FROM pg_database
UNION ALL SELECT defaclrole::regrole::text, defaclacl::text, NULL, NULL, NULL
          FROM pg_default_acl
UNION ALL SELECT roleid::regrole::text, member::regrole::text, NULL, NULL, NULL
          FROM pg_auth_members
ORDER BY 1, 2, 3
"""


def snapshot(rds, connection) -> tuple:
    """Every role with its attributes and password, the grants on the database's objects,
    default privileges and memberships (one query: pg_authid is a shared catalog), and every
    secret with its versions."""
    rows = rds.run_sql(connection, SNAPSHOT)
    secrets = sorted(
        (s["Name"], sorted(s.get("SecretVersionsToStages", {}).items()), "DeletedDate" in s)
        for s in rds.sm.list_secrets(IncludePlannedDeletion=True)["SecretList"]
    )
    return rows, secrets


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(data=st.data())
def test_a_generated_event_yields_a_report_or_exit_2_and_exit_2_changes_nothing(rds, data):
    if not hasattr(rds, "snapshot_connection"):  # one for all the examples
        with rds.as_master() as connection:
            rds.run_sql(connection, "CREATE TABLE t (id serial)")
        rds.snapshot_connection = rds.superuser(rds.database)
    superuser = rds.snapshot_connection
    base = rds.event([])
    event = data.draw(events(base))
    before = snapshot(rds, superuser)
    try:
        result = rds.invoke(event)
    except tool.InvalidEvent as error:
        assert error.problems
        assert snapshot(rds, superuser) == before, f"exit 2 changed something: {error}"
        return
    assert result["status"] in ("success", "dry_run")
    if result["status"] == "dry_run":
        assert snapshot(rds, superuser) == before
