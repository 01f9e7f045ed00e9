"""Sections 6 and 10, planning: desired vs current state -> PostgreSQL's ordered steps, and the
password decisions, all pure: these tests build the state by hand and need no server."""

from __future__ import annotations

import pytest
from conftest import spec
from lambda_function import (
    PG_ACL_ENTRIES_LIMIT,
    POSTGRES,
    Credential,
    DefaultGrant,
    Event,
    Facts,
    Held,
    InvalidEvent,
    PgObject,
    PgRole,
    PgState,
    Probe,
    Rotation,
    SecretState,
    Target,
    UserSpec,
    decide_credential,
    make_plan,
    pg_state_problems,
    plan_postgres,
    with_steps,
)
from psycopg2 import sql

MASTER = "master"
TARGET = Target("postgres", "db.example", 5432, "app", MASTER, "pw", "arn:master", "require")


def text(composable: sql.Composable) -> str:
    """A readable rendering without a server (the integration tests check real quoting)."""
    if isinstance(composable, sql.Composed):
        return "".join(text(part) for part in composable)
    if isinstance(composable, sql.Identifier):
        return ".".join(f'"{s}"' for s in composable.strings)
    if isinstance(composable, sql.Literal):
        return repr(composable.wrapped)
    return composable.string


def event(*users: UserSpec, schemas=("public",)) -> Event:
    return Event(secret_name="m", database="app", users=users, schemas=schemas)


def state(*objects: PgObject, roles=(), defaults=(), major=16, deps=None) -> PgState:
    known = {r.name: r for r in (PgRole(MASTER, master_has_privileges=True), *roles)}
    base = [PgObject("database", None, "app", MASTER), PgObject("schema", None, "public", MASTER)]
    return PgState(major, MASTER, known, base + list(objects), list(defaults), deps or {})


# One privilege a grantor gave a grantee, as an ACL lists it: (grantee, grantor, privilege).
Grant = tuple[str, str, str]


def held(*grants: Grant) -> Held:
    """The grants as the state holds them: grantee -> grantor -> privileges."""
    found: dict[str, dict[str, frozenset[str]]] = {}
    for grantee, grantor, privilege in grants:
        by_grantor = found.setdefault(grantee, {})
        by_grantor[grantor] = by_grantor.get(grantor, frozenset()) | {privilege}
    return found


def table(name: str, owner: str, *grants: Grant, kind="table", entries=0) -> PgObject:
    return PgObject(kind, "public", name, owner, held(*grants), entries=entries)


def statements(steps) -> list[str]:
    return [(f"[as {s.as_role}] " if s.as_role else "") + text(s.statement) for s in steps]


def test_new_users_of_the_seed_shape():
    steps = plan_postgres(
        event(
            spec("ddl", ddl=True, privileges="SELECT,INSERT"),
            spec("ro", grantor="ddl", privileges="SELECT"),
        ),
        state(),
        {"ddl": "v1", "ro": "v2"},
    )

    assert statements(steps) == [
        "CREATE ROLE \"ddl\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'v1'",
        "CREATE ROLE \"ro\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'v2'",
        'GRANT "ddl" TO CURRENT_USER WITH INHERIT FALSE, SET TRUE',
        'GRANT CONNECT ON DATABASE "app" TO "ddl", "ro"',
        'GRANT CREATE, USAGE ON SCHEMA "public" TO "ddl"',
        'GRANT USAGE ON SCHEMA "public" TO "ro"',
        '[as ddl] ALTER DEFAULT PRIVILEGES FOR ROLE "ddl" IN SCHEMA "public" GRANT SELECT '
        'ON SEQUENCES TO "ro"',
        '[as ddl] ALTER DEFAULT PRIVILEGES FOR ROLE "ddl" IN SCHEMA "public" GRANT SELECT '
        'ON TABLES TO "ro"',
        'REVOKE "ddl" FROM CURRENT_USER',
    ]


def test_before_16_the_temporary_membership_has_no_options():
    steps = plan_postgres(
        event(spec("ddl"), spec("ro", grantor="ddl", privileges="SELECT")),
        state(major=15),
        {"ddl": "v1", "ro": "v2"},
    )
    assert 'GRANT "ddl" TO CURRENT_USER' in statements(steps)


def test_grantees_and_objects_are_batched_into_one_statement_per_privilege_set():
    readers = [spec(f"r{i}", privileges="SELECT") for i in range(100)]
    tables = [table(f"t{i}", MASTER) for i in range(50)]

    steps = plan_postgres(event(*readers), state(*tables), {r.name: "v" for r in readers})

    grants_on_tables = [s for s in statements(steps) if " ON TABLE " in s]
    assert len(grants_on_tables) == 1
    assert grants_on_tables[0].count('"public"."t') == 50
    assert grants_on_tables[0].count('"r') == 100
    assert len(steps) == 100 + 1 + 1 + 1  # roles, CONNECT, USAGE, SELECT


def test_privileges_are_granted_as_the_owner_the_master_cannot_inherit():
    roles = [PgRole("owner"), PgRole("reader")]
    steps = plan_postgres(
        event(spec("reader", privileges="SELECT")), state(table("t", "owner"), roles=roles), {}
    )

    assert statements(steps) == [
        'GRANT "owner" TO CURRENT_USER WITH INHERIT FALSE, SET TRUE',
        'GRANT CONNECT ON DATABASE "app" TO "reader"',
        'GRANT USAGE ON SCHEMA "public" TO "reader"',
        '[as owner] GRANT SELECT ON TABLE "public"."t" TO "reader"',
        'REVOKE "owner" FROM CURRENT_USER',
    ]


def test_no_membership_is_taken_when_the_master_already_may_act():
    roles = [PgRole("owner", master_has_privileges=True), PgRole("reader")]
    steps = plan_postgres(
        event(spec("reader", privileges="SELECT")), state(table("t", "owner"), roles=roles), {}
    )
    assert 'GRANT SELECT ON TABLE "public"."t" TO "reader"' in statements(steps)
    assert not any("CURRENT_USER" in s or s.startswith("[as") for s in statements(steps))


def test_sequences_follow_the_table_privileges():
    roles = [PgRole("w"), PgRole("r")]
    steps = plan_postgres(
        event(spec("w", privileges="INSERT"), spec("r", privileges="SELECT")),
        state(table("s", MASTER, kind="sequence"), roles=roles, defaults=[]),
        {},
    )
    assert 'GRANT SELECT, USAGE ON SEQUENCE "public"."s" TO "w"' in statements(steps)
    assert 'GRANT SELECT ON SEQUENCE "public"."s" TO "r"' in statements(steps)


def test_undeclared_privileges_are_revoked_by_their_grantor():
    roles = [PgRole("r"), PgRole("owner")]
    t = table("t", "owner", ("r", "owner", "SELECT"), ("r", "owner", "DELETE"))
    steps = plan_postgres(event(spec("r", privileges="SELECT")), state(t, roles=roles), {})

    assert '[as owner] REVOKE DELETE ON TABLE "public"."t" FROM "r"' in statements(steps)
    assert not any("GRANT SELECT ON TABLE" in s for s in statements(steps))


def test_an_owners_own_privileges_are_never_touched():
    roles = [PgRole("ddl")]
    t = table("mine", "ddl", ("ddl", "ddl", "SELECT"), ("ddl", "ddl", "DELETE"))
    steps = plan_postgres(event(spec("ddl", ddl=True)), state(t, roles=roles), {})
    assert not any('"public"."mine"' in s for s in statements(steps))


def test_default_privileges_from_another_role_are_revoked():
    roles = [PgRole("r"), PgRole("old", master_has_privileges=True)]
    defaults = [DefaultGrant("old", "public", "tables", "r", "SELECT")]
    steps = plan_postgres(
        event(spec("r", privileges="SELECT")), state(roles=roles, defaults=defaults), {}
    )
    assert (
        'ALTER DEFAULT PRIVILEGES FOR ROLE "old" IN SCHEMA "public" REVOKE SELECT ON TABLES '
        'FROM "r"'
    ) in statements(steps)


def test_a_converged_state_plans_nothing():
    roles = [PgRole("ddl"), PgRole("r")]
    grants = (("r", "ddl", "SELECT"),)
    current = state(
        table("t", "ddl", *grants),
        table("s", "ddl", *grants, kind="sequence"),
        PgObject(
            "database",
            None,
            "app",
            MASTER,
            held(("r", MASTER, "CONNECT"), ("ddl", MASTER, "CONNECT")),
        ),
        PgObject(
            "schema",
            None,
            "public",
            MASTER,
            held(("r", MASTER, "USAGE"), ("ddl", MASTER, "USAGE"), ("ddl", MASTER, "CREATE")),
        ),
        roles=roles,
        defaults=[
            DefaultGrant("ddl", "public", kind, "r", "SELECT") for kind in ("tables", "sequences")
        ],
    )
    current.objects = current.objects[2:]  # the hand-made database and schema replace the base

    assert (
        plan_postgres(
            event(spec("ddl", ddl=True), spec("r", grantor="ddl", privileges="SELECT")), current, {}
        )
        == []
    )


def test_delete_revokes_reassigns_and_drops_with_an_inheriting_membership():
    roles = [PgRole("gone"), PgRole("ddl")]
    t = table("t", "ddl", ("gone", "ddl", "SELECT"))
    steps = plan_postgres(
        event(spec("gone", action="delete", grantor="ddl")), state(t, roles=roles), {}
    )

    assert statements(steps) == [
        'GRANT "ddl" TO CURRENT_USER WITH INHERIT TRUE, SET TRUE',
        'GRANT "gone" TO CURRENT_USER WITH INHERIT TRUE, SET TRUE',
        '[as ddl] REVOKE SELECT ON TABLE "public"."t" FROM "gone"',
        'REASSIGN OWNED BY "gone" TO "ddl"',
        'DROP OWNED BY "gone"',
        'DROP ROLE "gone"',
        'REVOKE "ddl" FROM CURRENT_USER',
    ]


def test_deleting_an_absent_user_plans_nothing():
    assert plan_postgres(event(spec("ghost", action="delete")), state(), {}) == []


def test_objects_of_a_superuser_in_scope_are_refused():
    roles = [PgRole("postgres", superuser=True)]
    problems = pg_state_problems(
        event(spec("r", privileges="SELECT")), state(table("t", "postgres"), roles=roles)
    )
    assert problems == [
        "objects of superuser 'postgres' are in the managed scope; the master cannot grant on them"
    ]


def readers(count: int, start: int = 0) -> list[UserSpec]:
    return [spec(f"r{i}", grantor="ddl", privileges="SELECT") for i in range(start, count)]


def test_more_grantees_on_a_table_than_its_catalog_row_holds_are_refused_up_front():
    """PostgreSQL keeps a table's ACL in its pg_class row, which is never stored out of line:
    measured, 2,400 entries fit and 2,450 do not ("row is too big"), after the secrets would
    have been written."""
    crowded = state(table("t", "ddl", entries=1), roles=[PgRole("ddl")])

    problems = pg_state_problems(event(*readers(PG_ACL_ENTRIES_LIMIT + 1)), crowded)

    [problem] = problems
    assert problem.startswith("too many grantees for PostgreSQL on table public.t (2,202)")
    assert "the default privileges of 'ddl' (2,201 grantees" in problem
    assert "Nothing was changed" in problem


def test_up_to_the_limit_of_entries_a_table_takes_its_grantees():
    fits = state(table("t", "ddl", entries=1), roles=[PgRole("ddl")])

    assert pg_state_problems(event(*readers(PG_ACL_ENTRIES_LIMIT - 1)), fits) == []


def test_entries_of_roles_the_event_does_not_name_count_and_its_deletes_free_theirs():
    """1,700 other roles hold grants on t; 400 of the event's users hold theirs already."""
    held_now = [(f"r{i}", "ddl", "SELECT") for i in range(400)]
    crowded = state(table("t", "ddl", *held_now, entries=2_100), roles=[PgRole("ddl")])
    leaving = [spec(f"r{i}", action="delete") for i in range(300)]

    assert pg_state_problems(event(*readers(600)), crowded) != []
    assert pg_state_problems(event(*leaving, *readers(600, start=300)), crowded) == []


def test_passwords_are_shown_blanked():
    steps = plan_postgres(event(spec("u")), state(), {"u": "SCRAM-SHA-256$secret"})
    assert text(steps[0].shown).endswith("PASSWORD '***'")
    assert "secret" not in text(steps[0].shown)


def test_state_problems_are_listed_together():
    roles = [PgRole("boss", superuser=True)]
    problems = pg_state_problems(
        event(
            spec("boss"),
            spec("r", grantor="ghost"),
            spec("x", action="delete"),
            schemas=("public", "missing"),
        ),
        state(roles=[*roles, PgRole("x")], deps={"x": ["database 'other' (2 objects)"]}),
    )
    assert problems == [
        "schema 'missing' does not exist in database 'app'",
        "user 'boss' is a superuser: never managed",
        "user 'r': grantor 'ghost' does not exist",
        "user 'x' cannot be deleted: 'x' owns objects or holds privileges in database 'other' "
        "(2 objects); reassign or revoke them there first",
    ]


# The password decisions: (does the role exist, what the secret holds, which password logs in)
# -> keep it, store a new user's first, stage a change, or finish an interrupted change.

OURS = "rds-initializer-1234"


def secret(password="old", pending=None, pending_password="new", exists=True) -> SecretState:
    return SecretState(
        name="s",
        arn="arn:s",
        exists=exists,
        value={"username": "u", "password": password} if password and exists else None,
        current_version="v1" if password and exists else None,
        pending_version=pending,
        pending_value={"username": "u", "password": pending_password} if pending else None,
    )


@pytest.mark.parametrize(
    "role_exists, stored, action, probe, mode, password",
    [
        (False, secret(exists=False), "create", Probe(), "new-user", None),
        (False, secret(), "create", Probe(), "keep", "old"),  # died before creating the role
        (False, secret(), "update", Probe(), "new-user", None),
        (True, secret(), "create", Probe(), "keep", "old"),
        (True, secret(), "update", Probe(), "change", None),
        (True, secret(exists=False), "create", Probe(), "change", None),
        (True, secret(password=None), "create", Probe(), "change", None),
        (True, secret(), "create", Probe(current_ok=False), "change", None),  # verify_logins
        (True, secret(pending=OURS), "create", Probe(pending_ok=True), "finish", "new"),
        (True, secret(pending=OURS), "create", Probe(False, True), "keep", "old"),  # undone
        (True, secret(pending=OURS), "create", Probe(False, False), "change", None),
    ],
)
def test_password_decisions(role_exists, stored, action, probe, mode, password):
    decided = decide_credential(spec("u", action=action), "u", stored, role_exists, probe, TARGET)
    assert (decided.mode, decided.password) == (mode, password)
    assert decided.undo_pending == (stored.pending_is_ours and mode != "finish")


def test_the_secret_value_is_the_aws_structure_and_keeps_other_keys():
    stored = secret()
    stored.value["note"] = "kept"
    decided = decide_credential(spec("u"), "u", stored, True, Probe(), TARGET)
    assert decided.final_value == {
        "note": "kept",
        "engine": "postgres",
        "host": "db.example",
        "port": 5432,
        "username": "u",
        "password": "old",
        "dbname": "app",
        "masterarn": "arn:master",
    }
    assert isinstance(decided, Credential)


def test_a_role_the_master_may_not_grant_itself_is_refused_with_the_fix():
    roles = [PgRole("stranger", master_is_admin=False), PgRole("reader")]
    problems = pg_state_problems(
        event(spec("reader", privileges="SELECT")), state(table("t", "stranger"), roles=roles)
    )
    assert len(problems) == 1
    assert 'GRANT "stranger" TO "master" WITH ADMIN OPTION' in problems[0]


# Rotation clones (docs/CONTRACT.md §6): prepared for the AWS function, kept, and deleted
# with their user.

ROTATING = Rotation(enabled=True, days=30)


def with_app(*roles: PgRole) -> PgState:
    """A database where the user app exists with its CONNECT and USAGE, and `roles` too."""
    current = state(
        PgObject("database", None, "app", MASTER, held(("app", MASTER, "CONNECT"))),
        PgObject("schema", None, "public", MASTER, held(("app", MASTER, "USAGE"))),
        roles=[PgRole("app"), *roles],
    )
    current.objects = current.objects[2:]  # the hand-made database and schema replace the base
    return current


def test_rotation_prepares_a_clone_that_becomes_its_user_at_login():
    steps = plan_postgres(event(spec("app", rotation=ROTATING)), state(), {"app": "v"})

    assert statements(steps)[:3] == [
        "CREATE ROLE \"app\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'v'",
        'CREATE ROLE "app_clone" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD NULL '
        'IN ROLE "app"',
        "ALTER ROLE \"app_clone\" SET role = 'app'",
    ]
    assert [s.summary for s in steps[1:3]] == [
        "prepare rotation clone app_clone",
        "rotation clone app_clone acts as app",
    ]


def test_a_ready_clone_needs_nothing_and_one_the_aws_function_made_is_completed():
    ready = PgRole("app_clone", member_of=("app",), config=("role=app",))
    made_by_aws = PgRole("app_clone", member_of=("app",))
    rotating = event(spec("app", rotation=ROTATING))

    assert plan_postgres(rotating, with_app(ready), {}) == []
    assert statements(plan_postgres(rotating, with_app(made_by_aws), {})) == [
        "ALTER ROLE \"app_clone\" SET role = 'app'"
    ]


def test_a_clone_is_left_alone_while_the_event_declares_no_rotation():
    made_by_aws = PgRole("app_clone", member_of=("app",))
    assert plan_postgres(event(spec("app")), with_app(made_by_aws), {}) == []


def test_a_new_password_goes_to_the_clone_the_secret_names():
    clone = PgRole("app_clone", member_of=("app",), config=("role=app",))
    steps = plan_postgres(event(spec("app")), with_app(clone), {"app_clone": "v"})
    assert statements(steps) == ["ALTER ROLE \"app_clone\" WITH PASSWORD 'v'"]
    assert steps[0].summary == "new password of app_clone"


def test_a_delete_takes_the_clone_with_its_user():
    clone = PgRole("app_clone", member_of=("app",))
    steps = plan_postgres(
        event(spec("app", action="delete")), state(roles=[PgRole("app"), clone]), {}
    )
    assert statements(steps) == [
        'GRANT "app" TO CURRENT_USER WITH INHERIT TRUE, SET TRUE',
        'GRANT "app_clone" TO CURRENT_USER WITH INHERIT TRUE, SET TRUE',
        'REASSIGN OWNED BY "app_clone", "app" TO "master"',
        'DROP OWNED BY "app_clone", "app"',
        'DROP ROLE "app_clone", "app"',
    ]


def test_on_16_a_clone_for_a_user_the_master_may_not_grant_is_refused_with_the_fix():
    roles = [PgRole("legacy", master_is_admin=False)]
    problems = pg_state_problems(event(spec("legacy", rotation=ROTATING)), state(roles=roles))
    assert len(problems) == 1
    assert 'GRANT "legacy" TO "master" WITH ADMIN OPTION' in problems[0]


def facts_of(state: PgState, *users: UserSpec, secrets=()) -> Facts:
    """What a run would have read: the state, each user's secret (absent unless given), and no
    login tried."""
    read = {u.secret_name: SecretState(u.secret_name) for u in users if u.secret_name}
    read.update({s.name: s for s in secrets})
    return Facts(state, read, {u.name: Probe() for u in users})


def test_the_planning_function_decides_and_plans_from_values_alone():
    """make_plan and with_steps: the event, the state and the secrets as values in, the
    decisions and the SQL out; nothing read or written, and the values given stay as they were."""
    ro_secret = SecretState(
        "secret-ro", arn="arn:ro", exists=True, value={"username": "ro", "password": "kept-pw"}
    )
    users = (
        spec("ddl", ddl=True, privileges="SELECT"),
        spec("ro", grantor="ddl", privileges="SELECT"),
    )
    current = state(roles=[PgRole("ro")])
    facts = facts_of(current, *users, secrets=[ro_secret])

    plan = make_plan(event(*users), TARGET, facts)

    assert {u: (c.mode, c.password) for u, c in plan.credentials.items()} == {
        "ddl": ("new-user", None),
        "ro": ("keep", "kept-pw"),
    }
    assert plan.secret_results == {"ddl": "created", "ro": "updated"}
    assert plan.passwords_wanted == 1 and plan.steps == () and plan.rotations == {}

    plan = with_steps(plan.with_passwords(["new-pw"]), {"ddl": "SCRAM-SHA-256$verifier"})

    assert plan.credentials["ddl"].final_value == {
        "engine": "postgres",
        "host": "db.example",
        "port": 5432,
        "username": "ddl",
        "dbname": "app",
        "masterarn": "arn:master",
        "password": "new-pw",
    }
    assert statements(plan.steps)[0] == (
        'CREATE ROLE "ddl" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE '
        "PASSWORD 'SCRAM-SHA-256$verifier'"
    )
    assert any("GRANT SELECT ON TABLE" in s or "GRANT CONNECT" in s for s in statements(plan.steps))
    with pytest.raises(AttributeError):
        plan.steps = ()  # type: ignore[misc]  # an immutable value
    assert ro_secret.value == {"username": "ro", "password": "kept-pw"}  # read, never written
    assert (
        make_plan(event(*users), TARGET, facts).credentials
        == make_plan(event(*users), TARGET, facts).credentials
    )


def test_the_planning_function_raises_every_problem_at_once():
    users = (spec("app", grantor="nobody"), spec("su"))
    current = state(roles=[PgRole("su", superuser=True)])

    with pytest.raises(InvalidEvent) as invalid:
        make_plan(event(*users), TARGET, facts_of(current, *users), ["a problem found before"])

    assert invalid.value.problems == [
        "a problem found before",
        "user 'app': grantor 'nobody' does not exist",
        "user 'su' is a superuser: never managed",
    ]


HOSTILE = ["it's", 'x"; DROP ROLE master; --', "back\\slash", "ünï"]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_plan_is_shown_without_a_connection_as_the_driver_quotes_it(rds, name):
    """A dry run's report renders its SQL with no connection (POSTGRES.render): the same text
    psycopg2 renders with one, hostile names included."""
    users = (spec(name, privileges="SELECT", rotation=Rotation(True, days=30)), spec("plain"))
    steps = plan_postgres(
        event(*users), state(table("t", MASTER)), {name: "SCRAM-SHA-256$v", "plain": "v"}
    )
    assert steps
    with rds.as_master() as connection:
        for step in steps:
            driver = (step.shown or step.statement).as_string(connection)
            if step.as_role:
                driver = f"SET ROLE {sql.Identifier(step.as_role).as_string(connection)}; {driver}"
            assert POSTGRES.render(step) == driver


# IAM database authentication (auth iam): no password, a member of rds_iam (docs/iam.md).

IAM_ROLE = PgRole("rds_iam", can_login=False)


def role_statements(*users: UserSpec, roles=(), passwords=None, **keys) -> list[str]:
    steps = plan_postgres(event(*users), state(roles=(IAM_ROLE, *roles), **keys), passwords or {})
    return [s for s in statements(steps) if "ROLE" in s or "rds_iam" in s]


def test_a_new_iam_user_has_no_password_and_holds_rds_iam():
    assert role_statements(spec("app", auth="iam")) == [
        'CREATE ROLE "app" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD NULL',
        'GRANT "rds_iam" TO "app"',
    ]


def test_a_password_user_made_an_iam_user_loses_its_password():
    assert role_statements(spec("app", auth="iam"), roles=[PgRole("app")]) == [
        'ALTER ROLE "app" WITH PASSWORD NULL',
        'GRANT "rds_iam" TO "app"',
    ]


def test_an_iam_user_as_it_should_be_plans_no_role_change():
    app = PgRole("app", iam=True, member_of=("rds_iam",))
    assert role_statements(spec("app", auth="iam"), roles=[app]) == []


def test_an_iam_user_declared_a_password_user_gives_up_rds_iam_and_gets_a_password():
    app = PgRole("app", iam=True, member_of=("rds_iam",), iam_grantors=(MASTER,))
    found = role_statements(
        spec("app", auth="password"), roles=[app], passwords={"app": "SCRAM-SHA-256$v"}
    )
    assert found == [
        'REVOKE "rds_iam" FROM "app"',
        "ALTER ROLE \"app\" WITH PASSWORD 'SCRAM-SHA-256$v'",
    ]


@pytest.mark.parametrize(
    ("app", "user", "said"),
    [
        (None, spec("app", auth="iam"), "needs the role rds_iam"),
        (
            PgRole("app", master_has_privileges=True),
            spec("app", auth="iam"),
            "would turn the master into an IAM-only login",
        ),
        (
            PgRole("app", iam=True, member_of=("iam_group",)),
            spec("app", auth="password"),
            "holds rds_iam through another role",
        ),
        (
            PgRole("app", iam=True, member_of=("rds_iam",), iam_grantors=("rdsadmin",)),
            spec("app", auth="password"),
            "granted rds_iam by 'rdsadmin'",
        ),
    ],
    ids=["no rds_iam", "the master inherits it", "through a group", "another grantor"],
)
def test_what_iam_needs_is_checked_before_anything_changes(app, user, said):
    roles = [r for r in (app,) if r] + ([] if said.startswith("needs") else [IAM_ROLE])
    problems = pg_state_problems(event(user), state(roles=roles))
    assert any(said in p for p in problems), problems
