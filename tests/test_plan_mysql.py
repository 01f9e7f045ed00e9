"""Section 11, the MySQL and MariaDB plan, pure: states built by hand, no server. MySQL 8 has no
server on these machines, so its dialect is checked here, statement by statement, against the
MySQL 8.0/8.4 reference (CREATE USER, ALTER USER, GRANT, REVOKE, DROP USER); the MariaDB
dialect is also run against a real MariaDB server in test_apply_mysql.py."""

from __future__ import annotations

import pytest
from conftest import spec
from lambda_function import (
    DIALECTS,
    MY_DDL_PRIVILEGES,
    Event,
    Facts,
    MyAccount,
    MyState,
    Probe,
    Rotation,
    SecretState,
    Settings,
    Target,
    UserSpec,
    bind_engine,
    make_plan,
    my_literal,
    my_state_problems,
    native_password_hash,
    plan_mysql,
    with_steps,
)

MASTER = "admin"


def event(*users: UserSpec, database="app", engine="mysql") -> Event:
    return bind_engine(Event(secret_name="m", database=database, users=users), DIALECTS[engine])


def state(*accounts, grants=None, mariadb=False, wildcards=True, backslashes=True, definers=None):
    known = {(MASTER, "%"): MyAccount(MASTER, "%")}
    known.update({(a.user, a.host): a for a in accounts})
    return MyState(
        mariadb=mariadb,
        database_exists=True,
        backslash_escapes=backslashes,
        wildcards=wildcards,
        accounts=known,
        grants={k: frozenset(v) for k, v in (grants or {}).items()},
        definers=definers or {},
    )


def statements(steps) -> list[str]:
    return [step.statement for step in steps]


def test_mysql8_new_users_of_the_seed_shape():
    steps = plan_mysql(
        event(
            spec("ddl", ddl=True, privileges="SELECT,INSERT"),
            spec("ro", grantor="ddl", privileges="SELECT"),
        ),
        state(),
        {"ddl": "pw-one", "ro": "pw-two"},
    )

    assert statements(steps) == [
        "CREATE USER 'ddl'@'%' IDENTIFIED BY 'pw-one'",
        "CREATE USER 'ro'@'%' IDENTIFIED BY 'pw-two'",
        "GRANT SELECT ON `app`.* TO 'ro'@'%'",
        "GRANT SELECT, INSERT, CREATE, DROP, REFERENCES, INDEX, ALTER, CREATE VIEW, SHOW VIEW, "
        "TRIGGER, EVENT, CREATE ROUTINE, ALTER ROUTINE, EXECUTE, CREATE TEMPORARY TABLES, "
        "LOCK TABLES ON `app`.* TO 'ddl'@'%'",
    ]
    assert [s.summary for s in steps][:2] == ["create user", "create user"]


def test_passwords_are_shown_blanked_in_plans():
    (create,) = plan_mysql(event(spec("u")), state(), {"u": "secret-pw"})
    assert DIALECTS["mysql"].render(create) == "CREATE USER 'u'@'%' IDENTIFIED BY '***'"


def test_mariadb_gets_the_native_password_hash_never_the_password():
    hashed = native_password_hash("abc")
    (create,) = plan_mysql(event(spec("u"), engine="mariadb"), state(mariadb=True), {"u": hashed})

    assert hashed == "*0D3CED9BEC10A777AEC23CCC353A8C08A633045E"  # MariaDB's PASSWORD('abc')
    assert create.statement == f"CREATE USER 'u'@'%' IDENTIFIED BY PASSWORD '{hashed}'"
    assert DIALECTS["mariadb"].render(create) == "CREATE USER 'u'@'%' IDENTIFIED BY PASSWORD '***'"


def test_a_new_password_for_an_existing_account_is_alter_user():
    steps = plan_mysql(
        event(spec("u", host="10.0.%", privileges="SELECT")),
        state(MyAccount("u", "10.0.%"), grants={("u", "10.0.%"): {"SELECT"}}),
        {"u": "new"},
    )
    assert statements(steps) == ["ALTER USER 'u'@'10.0.%' IDENTIFIED BY 'new'"]


def test_grantees_that_need_the_same_privileges_share_one_statement():
    users = [spec(f"u{i}", privileges="SELECT") for i in range(3)]
    accounts = [MyAccount(u.name, "%") for u in users]
    steps = plan_mysql(event(*users), state(*accounts), {})
    assert statements(steps) == ["GRANT SELECT ON `app`.* TO 'u0'@'%', 'u1'@'%', 'u2'@'%'"]
    assert steps[0].users == ("u0", "u1", "u2")


def test_undeclared_privileges_and_the_grant_option_are_revoked():
    steps = plan_mysql(
        event(spec("u", privileges="SELECT")),
        state(MyAccount("u", "%"), grants={("u", "%"): {"SELECT", "DELETE", "GRANT OPTION"}}),
        {},
    )
    assert statements(steps) == ["REVOKE DELETE, GRANT OPTION ON `app`.* FROM 'u'@'%'"]
    assert steps[0].summary == "revoke DELETE, GRANT OPTION on app.*"


def test_privileges_the_tool_does_not_know_are_left_alone():
    steps = plan_mysql(
        event(spec("u", privileges="SELECT")),
        state(MyAccount("u", "%"), grants={("u", "%"): {"SELECT", "SOMETHING NEW"}}),
        {},
    )
    assert steps == []


def test_a_converged_server_needs_no_statement():
    users = [spec("ddl", ddl=True, privileges="SELECT"), spec("ro", privileges="SELECT")]
    ddl = {"SELECT", *MY_DDL_PRIVILEGES}
    current = state(
        MyAccount("ddl", "%"),
        MyAccount("ro", "%"),
        grants={("ddl", "%"): ddl, ("ro", "%"): {"SELECT"}},
    )
    assert plan_mysql(event(*users), current, {}) == []


def test_never_a_grant_on_every_database():
    users = [spec("a", ddl=True, privileges="SELECT"), spec("b", privileges="SELECT,INSERT")]
    for step in plan_mysql(event(*users), state(), {"a": "x", "b": "y"}):
        assert "*.*" not in step.statement


def test_deletes_run_grantees_first_and_skip_absent_accounts():
    steps = plan_mysql(
        event(
            spec("ddl", action="delete", secret_name=None),
            spec("ro", grantor="ddl", action="delete", secret_name=None),
            spec("gone", action="delete", secret_name=None),
        ),
        state(MyAccount("ddl", "%"), MyAccount("ro", "%")),
        {},
    )
    assert statements(steps) == ["DROP USER 'ro'@'%'", "DROP USER 'ddl'@'%'"]


@pytest.mark.parametrize(
    ("backslashes", "quoted"),
    [(True, "'it\\'s\\\\'"), (False, "'it''s\\'")],
)
def test_names_are_quoted_by_the_drivers_escaping_for_the_sessions_sql_mode(backslashes, quoted):
    assert my_literal("it's\\", state(backslashes=backslashes)) == quoted


def test_a_hostile_name_stays_one_string_literal():
    name = "x'@'%'; DROP DATABASE app; -- "
    (create,) = plan_mysql(event(spec(name)), state(), {name: "pw"})
    assert create.statement == (
        "CREATE USER 'x\\'@\\'%\\'; DROP DATABASE app; -- '@'%' IDENTIFIED BY 'pw'"
    )


@pytest.mark.parametrize(("wildcards", "target"), [(True, "`my\\_app`"), (False, "`my_app`")])
def test_the_database_name_grants_on_that_database_only(wildcards, target):
    """`_` is a pattern in a GRANT's database name unless partial_revokes is on (MySQL 8)."""
    steps = plan_mysql(
        event(spec("u", privileges="SELECT"), database="my_app"),
        state(MyAccount("u", "%"), wildcards=wildcards),
        {},
    )
    assert statements(steps) == [f"GRANT SELECT ON {target}.* TO 'u'@'%'"]


def test_a_backtick_in_the_database_name_is_doubled():
    steps = plan_mysql(
        event(spec("u", privileges="SELECT"), database="a`b"), state(MyAccount("u", "%")), {}
    )
    assert statements(steps) == ["GRANT SELECT ON `a``b`.* TO 'u'@'%'"]


def test_superusers_roles_missing_grantors_and_definers_are_refused():
    users = event(
        spec("boss"),
        spec("team"),
        spec("app", grantor="nobody"),
        spec("old", action="delete", secret_name=None),
    )
    current = state(
        MyAccount("boss", "%", superuser=True),
        MyAccount("team", "%", is_role=True),
        MyAccount("old", "%"),
        definers={("old", "%"): ["view app.v", "procedure app.p"]},
    )
    assert my_state_problems(users, current) == [
        "user 'boss'@'%' has SUPER: never managed",
        "user 'team'@'%' is a role, not a user: never managed",
        "user 'app'@'%': grantor 'nobody' does not exist",
        "user 'old'@'%' cannot be deleted: it is the DEFINER of procedure app.p, view app.v; "
        "change their DEFINER or drop them first",
    ]


# Rotation clones (docs/CONTRACT.md §6): the AWS function copies U's grants to U_clone once;
# after that the clone's grants follow U's, its password is the secret's when the secret
# names it, and a delete drops both.


def test_the_clones_grants_follow_its_users():
    current = state(
        MyAccount("u", "%"),
        MyAccount("u_clone", "%"),
        grants={("u", "%"): {"SELECT"}, ("u_clone", "%"): {"SELECT"}},
    )
    steps = plan_mysql(event(spec("u", privileges="SELECT,INSERT")), current, {})

    assert statements(steps) == [
        "GRANT INSERT ON `app`.* TO 'u'@'%'",
        "GRANT INSERT ON `app`.* TO 'u_clone'@'%'",
    ]
    assert [s.summary for s in steps] == [
        "grant INSERT on app.*",
        "grant INSERT on app.* for the rotation clone",
    ]
    assert {s.users for s in steps} == {("u",)}


def test_the_aws_functions_clone_at_any_host_is_found_at_percent():
    current = state(MyAccount("u", "10.0.%"), MyAccount("u_clone", "%"))
    steps = plan_mysql(event(spec("u", host="10.0.%")), current, {"u_clone": "new"})
    assert statements(steps) == ["ALTER USER 'u_clone'@'%' IDENTIFIED BY 'new'"]
    assert steps[0].summary == "new password of u_clone"


def test_a_delete_drops_the_user_and_its_clone_in_one_statement():
    current = state(MyAccount("u", "%"), MyAccount("u_clone", "%"))
    steps = plan_mysql(event(spec("u", action="delete", secret_name=None)), current, {})
    assert statements(steps) == ["DROP USER 'u'@'%', 'u_clone'@'%'"]
    assert steps[0].summary == "drop user and its rotation clone"


def test_a_clone_that_defines_a_view_blocks_the_delete():
    current = state(
        MyAccount("u", "%"),
        MyAccount("u_clone", "%"),
        definers={("u_clone", "%"): ["view app.v"]},
    )
    (problem,) = my_state_problems(event(spec("u", action="delete", secret_name=None)), current)
    assert "it is the DEFINER of view app.v" in problem


def test_the_planning_function_decides_and_plans_from_values_alone_on_mariadb():
    """make_plan and with_steps on MariaDB state values: a new user, and an existing one whose
    password changes (update) and whose rotation is turned on with the deployment's function."""
    function = "arn:aws:lambda:us-east-1:123456789012:function:rotate-mariadb"
    settings = Settings.read({"ROTATION_LAMBDA_ARN_MARIADB": function})
    target = Target(
        "mariadb", "db.example", 3306, "app", MASTER, "pw", "arn:m", "require", settings
    )
    users = (
        spec("new", privileges="SELECT"),
        spec("old", privileges="SELECT", action="update", rotation=Rotation(True, days=30)),
    )
    old_secret = SecretState(
        "secret-old", arn="arn:old", exists=True, value={"username": "old", "password": "was"}
    )
    current = state(MyAccount("old", "%"), grants={("old", "%"): {"SELECT"}}, mariadb=True)
    secrets = {"secret-new": SecretState("secret-new"), "secret-old": old_secret}
    facts = Facts(current, secrets, {"new": Probe(), "old": Probe()})

    plan = make_plan(event(*users, engine="mariadb"), target, facts)

    assert {u: c.mode for u, c in plan.credentials.items()} == {"new": "new-user", "old": "change"}
    assert plan.secret_results == {"new": "created", "old": "updated"}
    assert plan.rotations["old"].change == "enable"
    assert plan.rotations["old"].function_arn == function
    assert plan.passwords_wanted == 2

    plan = plan.with_passwords(["pw-new", "pw-old"])
    hashes = {c.login: native_password_hash(c.password) for c in plan.to_hash}
    plan = with_steps(plan, hashes)

    assert statements(plan.steps) == [
        f"CREATE USER 'new'@'%' IDENTIFIED BY PASSWORD '{native_password_hash('pw-new')}'",
        f"ALTER USER 'old'@'%' IDENTIFIED BY PASSWORD '{native_password_hash('pw-old')}'",
        "GRANT SELECT ON `app`.* TO 'new'@'%'",
    ]
    assert old_secret.value == {"username": "old", "password": "was"}


# IAM database authentication (auth iam): RDS's plugin for MySQL and MariaDB alike, as AWS
# documents it (CREATE USER ... IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'), TLS required.
# No server here loads that plugin: the statements are checked against the documentation.


@pytest.mark.parametrize("engine", ["mysql", "mariadb"])
def test_a_new_iam_user_gets_the_aws_plugin_and_tls_and_its_grants(engine):
    steps = plan_mysql(
        event(spec("app", auth="iam", privileges="SELECT"), engine=engine),
        state(mariadb=engine == "mariadb"),
        {},
    )

    assert statements(steps) == [
        "CREATE USER 'app'@'%' IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS' REQUIRE SSL",
        "GRANT SELECT ON `app`.* TO 'app'@'%'",
    ]
    assert steps[0].summary == "create user (IAM authentication)"


@pytest.mark.parametrize("engine", ["mysql", "mariadb"])
def test_a_password_account_made_an_iam_user_changes_plugin_without_a_password(engine):
    account = MyAccount("app", "%", plugin="mysql_native_password")
    steps = plan_mysql(
        event(spec("app", auth="iam"), engine=engine), state(account, mariadb=True), {}
    )

    assert statements(steps) == [
        "ALTER USER 'app'@'%' IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS' REQUIRE SSL"
    ]
    assert "IDENTIFIED BY" not in steps[0].statement


def test_an_iam_account_that_does_not_require_tls_is_made_to():
    account = MyAccount("app", "10.0.%", plugin="AWSAuthenticationPlugin")
    (step,) = plan_mysql(event(spec("app", auth="iam", host="10.0.%")), state(account), {})

    assert step.statement == "ALTER USER 'app'@'10.0.%' REQUIRE SSL"


def test_an_iam_account_as_it_should_be_plans_nothing():
    account = MyAccount("app", "%", plugin="AWSAuthenticationPlugin", ssl_type="ANY")
    steps = plan_mysql(
        event(spec("app", auth="iam", privileges="SELECT")),
        state(account, grants={("app", "%"): {"SELECT"}}),
        {},
    )

    assert steps == []


def test_an_iam_user_is_a_grantor_and_a_ddl_user_as_any_other():
    steps = plan_mysql(
        event(
            spec("owner", auth="iam", ddl=True),
            spec("reader", grantor="owner", privileges="SELECT"),
        ),
        state(),
        {"reader": "pw"},
    )

    assert statements(steps)[:2] == [
        "CREATE USER 'owner'@'%' IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS' REQUIRE SSL",
        "CREATE USER 'reader'@'%' IDENTIFIED BY 'pw'",
    ]
    assert any(
        s.startswith("GRANT CREATE, DROP") and s.endswith("TO 'owner'@'%'")
        for s in statements(steps)
    )


@pytest.mark.parametrize(
    ("plugin", "said"),
    [
        ("AWSAuthenticationPlugin", "IAM (plugin AWSAuthenticationPlugin)"),
        ("ed25519", "plugin ed25519"),
        ("auth_socket", "plugin auth_socket"),
    ],
)
def test_an_account_of_another_plugin_authenticates_another_way(plugin, said):
    user = spec("app")

    assert state(MyAccount("app", "%", plugin=plugin)).other_auth(user) == said
    for password_plugin in ("mysql_native_password", "caching_sha2_password", ""):
        assert state(MyAccount("app", "%", plugin=password_plugin)).other_auth(user) is None


def test_iam_users_need_the_plugin_loaded():
    loaded = state()
    missing = state()
    missing.iam_plugin = False

    assert my_state_problems(event(spec("app", auth="iam")), loaded) == []
    (problem,) = my_state_problems(event(spec("app", auth="iam")), missing)
    assert "AWSAuthenticationPlugin, which is not loaded" in problem


@pytest.mark.parametrize("engine", ["mysql", "mariadb"])
def test_an_iam_account_declared_a_password_user_gets_a_password_and_its_plugin(engine):
    """ALTER USER ... IDENTIFIED BY sets the default password plugin (MySQL) or
    mysql_native_password (MariaDB's IDENTIFIED BY PASSWORD) in place of RDS's."""
    mariadb = engine == "mariadb"
    account = MyAccount("app", "%", plugin="AWSAuthenticationPlugin", ssl_type="ANY")
    identified_by = native_password_hash("pw") if mariadb else "pw"
    (step,) = plan_mysql(
        event(spec("app", auth="password"), engine=engine),
        state(account, mariadb=mariadb),
        {"app": identified_by},
    )

    clause = f"IDENTIFIED BY PASSWORD '{identified_by}'" if mariadb else "IDENTIFIED BY 'pw'"
    assert step.statement == f"ALTER USER 'app'@'%' {clause}"
    assert step.summary == "new password instead of IAM (plugin AWSAuthenticationPlugin)"
