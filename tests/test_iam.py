"""IAM database authentication (docs/iam.md): users declared "auth": "iam" log in with IAM tokens
only, and an account that authenticates another way is never given a password.

PostgreSQL: RDS's rds_iam is made here by the bootstrap superuser (as rdsadmin makes it on RDS),
and pg_hba.conf refuses every password login of its members (ident, with no ident server: an
authentication failure, as RDS's PAM check answers), directly or through other roles,
as RDS does (it sends them to its IAM token check): "IAM-only" is enforced by the server.
MariaDB: RDS's AWSAuthenticationPlugin is not here; accounts of the ed25519 and unix_socket
plugins stand in for it where what matters is that an account authenticates another way. The
plugin's own SQL is checked by the pure planner tests (test_plan_mysql.py)."""

from __future__ import annotations

import dataclasses

import psycopg2
import pytest
from conftest import SEED, spec, tool, user
from psycopg2 import sql

DDL, DML, RO = (u["user_secret_name"] for u in SEED["users"])
RO_USER = "airflow-ro-dml"


@pytest.fixture
def iam(rds):
    """The RDS-like database with rds_iam, enforced by pg_hba.conf (put back afterwards).

    The master grants rds_iam as on RDS. Before 16 its CREATEROLE suffices; from 16 on it needs
    ADMIN OPTION on rds_iam, given here WITH INHERIT FALSE, SET FALSE (RDS gives its master the
    right its own way). On 16+ that option, like the ADMIN-only membership PostgreSQL gives a
    role's creator in every role it creates, is a membership pg_hba.conf's +rds_iam counts,
    though the master inherits nothing through it; RDS goes by what a role holds (its master
    creates IAM users on 16+ and keeps logging in with its password), so there the master's own
    line comes first. The tests check what the master inherits in the catalog instead."""
    with rds.superuser() as admin:
        rds.run_sql(admin, "CREATE ROLE rds_iam")
        master = sql.Identifier(rds.master).as_string(admin)
        lines = []
        if rds.major >= 16:
            rds.run_sql(
                admin, f"GRANT rds_iam TO {master} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE"
            )
            lines.append(f"host all {rds.master} 127.0.0.1/32 scram-sha-256")
        # ident with no ident server: refused as "Ident authentication failed", which the
        # drivers report as RDS reports its PAM check ("PAM authentication failed"): an
        # authentication failure, as a wrong password is, not a connection refused.
        lines += ["host all +rds_iam 127.0.0.1/32 ident", "host all +rds_iam ::1/128 ident"]
        hba = rds.server.datadir / "pg_hba.conf"
        before = hba.read_text()
        hba.write_text("\n".join(lines) + "\n" + before)
        rds.run_sql(admin, "SELECT pg_reload_conf()")
        try:
            yield rds
        finally:
            hba.write_text(before)
            rds.run_sql(admin, "SELECT pg_reload_conf()")


def seed_with_iam_reader(db, auth="iam") -> dict:
    """The seed example with its read-only user declared by `auth`."""
    raw = db.seed_event()
    raw["users"][2]["auth"] = auth
    return raw


def entry(report: dict, name: str) -> dict:
    return next(u for u in report["users"] if u["db_user"] == name)


def superuser_rows(db, statement: str, *params) -> list[tuple]:
    with db.superuser() as connection:
        return db.run_sql(connection, statement, *params)


def has_password(db, role: str) -> bool:
    """Whether the role has a password at all (pg_authid: the superuser may read it)."""
    return superuser_rows(
        db, "SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = %s", role
    )[0][0]


def holds_rds_iam(db, role: str) -> bool:
    return superuser_rows(db, "SELECT pg_has_role(%s, 'rds_iam', 'MEMBER')", role)[0][0]


def password_login_refused(db, role: str) -> str:
    """The server's answer to a password login as `role` (any password: it never gets that far)."""
    with pytest.raises(psycopg2.OperationalError) as refused:
        db.connect(role, "any-password-at-all")
    return str(refused.value)


def run_as(db, role: str, statement: str) -> list[tuple]:
    """Run a statement as `role` (SET ROLE from the superuser, since an IAM user cannot log in
    here): what the role's privileges allow it, committed."""
    with db.superuser() as connection:
        db.run_sql(
            connection, sql.SQL("SET ROLE {}").format(sql.Identifier(role)).as_string(connection)
        )
        return db.run_sql(connection, statement)


def master_inherits_rds_iam(db) -> bool:
    """Whether the master has rds_iam's privileges, which makes it an IAM login on RDS (and,
    before 16, whether it is a member at all: there every membership inherits)."""
    kind = "USAGE" if db.major >= 16 else "MEMBER"
    return superuser_rows(db, f"SELECT pg_has_role(%s, 'rds_iam', '{kind}')", db.master)[0][0]


def inheriting(db) -> set[str]:
    """The roles the master is a member of with their privileges (before 16 every membership;
    from 16 on, those WITH INHERIT TRUE: not the ADMIN-only ones a role's creator holds)."""
    return {role for role, _, inherit, _ in db.master_memberships() if inherit is not False}


def secret_exists(db, name: str) -> bool:
    try:
        found = db.sm.describe_secret(SecretId=name)
    except db.sm.exceptions.ResourceNotFoundException:
        return False
    return "DeletedDate" not in found


# --- PostgreSQL -----------------------------------------------------------------------------


def test_the_seed_with_an_iam_reader_creates_it_without_a_password(iam):
    memberships = inheriting(iam)
    with iam.as_master() as connection:  # before 15, PUBLIC may create in public: not our grant
        iam.run_sql(connection, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")

    report = iam.invoke(seed_with_iam_reader(iam))

    reader = entry(report, RO_USER)
    assert reader["result"] == "created" and reader["auth"] == "iam"
    assert reader["secret"]["result"] == "absent" and not secret_exists(iam, RO)
    assert reader["iam_policy"]["resource"] == (
        f"arn:aws:rds-db:us-east-1:123456789012:dbuser:<resource-id>/{RO_USER}"
    )
    assert "DbiResourceId" in reader["iam_policy"]["<resource-id>"]
    assert not has_password(iam, RO_USER) and holds_rds_iam(iam, RO_USER)
    assert "Ident authentication failed" in password_login_refused(iam, RO_USER)
    # The other two work as before, and the reader gets what the DDL user creates later.
    with iam.login(DDL) as connection:
        iam.run_sql(connection, "CREATE TABLE dag_run (id serial PRIMARY KEY, state text)")
        iam.run_sql(connection, "INSERT INTO dag_run (state) VALUES ('done')")
    assert run_as(iam, RO_USER, "SELECT state FROM dag_run") == [("done",)]
    assert iam.can(DML, "INSERT INTO dag_run (state) VALUES ('queued')")
    assert iam.can(DML, "SELECT * FROM dag_run")
    assert not iam.can(DML, "CREATE TABLE t (x int)")
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        run_as(iam, RO_USER, "INSERT INTO dag_run (state) VALUES ('x')")
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        run_as(iam, RO_USER, "CREATE TABLE t (x int)")
    # The master never comes to hold rds_iam: what it inherits is what it was.
    assert not master_inherits_rds_iam(iam)
    assert inheriting(iam) == memberships
    with iam.as_master() as connection:
        assert iam.run_sql(connection, "SELECT current_user") == [(iam.master,)]

    again = iam.invoke(seed_with_iam_reader(iam))

    assert again["changed"] is False
    assert entry(again, RO_USER)["result"] == "unchanged"


def test_switching_a_user_to_iam_and_back_converges_each_way(iam):
    iam.invoke(iam.seed_event())
    with iam.login(RO) as connection:
        assert iam.run_sql(connection, "SELECT current_user") == [(RO_USER,)]

    to_iam = iam.invoke(seed_with_iam_reader(iam))

    changes = entry(to_iam, RO_USER)["changes"]
    assert (
        "remove its password" in changes
        and "grant rds_iam: logs in with IAM authentication" in changes
    )
    assert entry(to_iam, RO_USER)["secret"]["result"] == "deleted"
    assert "DeletedDate" in iam.sm.describe_secret(SecretId=RO)  # the recovery window
    assert not has_password(iam, RO_USER) and holds_rds_iam(iam, RO_USER)
    assert "Ident authentication failed" in password_login_refused(iam, RO_USER)
    assert iam.invoke(seed_with_iam_reader(iam))["changed"] is False

    back = iam.invoke(seed_with_iam_reader(iam, auth="password"))

    assert entry(back, RO_USER)["secret"]["result"] == "updated"  # restored, a new password
    assert not holds_rds_iam(iam, RO_USER)
    with iam.login(RO) as connection:
        assert iam.run_sql(connection, "SELECT current_user") == [(RO_USER,)]
    assert iam.invoke(seed_with_iam_reader(iam, auth="password"))["changed"] is False
    assert iam.invoke(iam.seed_event())["changed"] is False  # a password user: auth by default

    again = iam.invoke(seed_with_iam_reader(iam))

    assert holds_rds_iam(iam, RO_USER) and not has_password(iam, RO_USER)
    assert entry(again, RO_USER)["secret"]["result"] == "deleted"
    assert not master_inherits_rds_iam(iam)


def test_an_iam_user_naming_no_secret_retires_the_one_the_tool_made_for_it(iam):
    iam.invoke(iam.event([user("app", grant_privileges="SELECT")]))

    report = iam.invoke(
        iam.event([{"db_user": "app", "auth": "iam", "grant_privileges": "SELECT"}])
    )

    secret = entry(report, "app")["secret"]
    assert secret["result"] == "deleted" and secret["found_by_tags"] is True
    assert not secret_exists(iam, "secret-app") and holds_rds_iam(iam, "app")
    again = iam.invoke(iam.event([{"db_user": "app", "auth": "iam", "grant_privileges": "SELECT"}]))
    assert again["changed"] is False and entry(again, "app")["result"] == "unchanged"


def assert_secret_untouched(db, existed: bool) -> None:
    """secret-app as the test left it: absent, or its one version with its password."""
    if not existed:
        assert not secret_exists(db, "secret-app")
        return
    assert db.secret("secret-app")["password"] == "p4ssw0rd-app"
    assert len(db.versions("secret-app")) == 1


def make_iam_role(db, name: str, through: str | None = None) -> None:
    """An account that logs in with IAM, made by hand by the master as AWS documents it:
    rds_iam granted to it, or to a group it is a member of."""
    role = sql.Identifier(name)
    with db.as_master() as admin:
        db.run_sql(admin, sql.SQL("CREATE ROLE {} LOGIN").format(role).as_string(admin))
        if through:
            group = sql.Identifier(through)
            for statement in ("CREATE ROLE {g}", "GRANT rds_iam TO {g}", "GRANT {g} TO {r}"):
                db.run_sql(admin, sql.SQL(statement).format(g=group, r=role).as_string(admin))
        else:
            db.run_sql(admin, sql.SQL("GRANT rds_iam TO {}").format(role).as_string(admin))


@pytest.mark.parametrize("through", [None, "iam_group"], ids=["directly", "through-a-group"])
@pytest.mark.parametrize(
    "how",
    [
        {},  # adopted: no secret yet
        {"action": "update"},
        {"rotate_password": True},
        {"verify_logins": True},
    ],
    ids=["adopting", "update", "rotate_password", "verify_logins"],
)
def test_an_account_holding_rds_iam_is_never_given_a_password(iam, how, through):
    make_iam_role(iam, "app", through)
    extra = {"verify_logins": True} if "verify_logins" in how else {}
    keys = {k: v for k, v in how.items() if k != "verify_logins"}
    if "verify_logins" in how:  # with a secret whose password would be "repaired"
        iam.sm.create_secret(
            Name="secret-app", SecretString='{"username": "app", "password": "p4ssw0rd-app"}'
        )

    with pytest.raises(tool.InvalidEvent) as refused:
        iam.invoke(iam.event([user("app", grant_privileges="SELECT", **keys)], **extra))

    message = str(refused.value)
    assert "'app' authenticates with IAM (it holds rds_iam" in message
    assert '"auth": "iam"' in message and '"auth": "password"' in message
    assert "Nothing was changed" in message
    assert not has_password(iam, "app") and holds_rds_iam(iam, "app")
    assert_secret_untouched(iam, "verify_logins" in how)


def test_the_command_line_refuses_it_with_exit_status_2(iam):
    make_iam_role(iam, "app")

    done = iam.cli(iam.event([user("app", grant_privileges="SELECT")]))

    assert done.returncode == 2
    assert "'app' authenticates with IAM (it holds rds_iam)" in done.stderr
    assert not secret_exists(iam, "secret-app") and not has_password(iam, "app")


def test_declared_iam_the_same_account_is_kept_and_granted(iam):
    make_iam_role(iam, "app", "iam_group")

    report = iam.invoke(iam.event([user("app", grant_privileges="SELECT", auth="iam")]))

    assert entry(report, "app")["result"] == "updated"
    assert all("rds_iam" not in change for change in entry(report, "app")["changes"])
    assert holds_rds_iam(iam, "app") and not has_password(iam, "app")


def test_a_role_holding_rds_iam_through_a_group_cannot_be_made_a_password_user(iam):
    make_iam_role(iam, "app", "iam_group")

    with pytest.raises(tool.InvalidEvent, match="holds rds_iam through another role"):
        iam.invoke(iam.event([user("app", auth="password")]))

    assert holds_rds_iam(iam, "app") and not secret_exists(iam, "secret-app")


def test_a_role_the_master_inherits_is_not_made_an_iam_user(iam):
    iam.invoke(iam.event([user("app")]))
    with iam.superuser() as admin:
        names = [sql.Identifier(n).as_string(admin) for n in ("app", iam.master)]
        inherit = " WITH INHERIT TRUE" if iam.major >= 16 else ""
        iam.run_sql(admin, f"GRANT {names[0]} TO {names[1]}{inherit}")

    with pytest.raises(tool.InvalidEvent, match="would turn the master into an IAM-only login"):
        iam.invoke(iam.event([user("app", auth="iam")]))

    assert not holds_rds_iam(iam, "app") and secret_exists(iam, "secret-app")


def test_a_role_other_roles_are_members_of_is_not_made_an_iam_user(iam):
    iam.invoke(iam.event([user("app")]))
    with iam.as_master() as master:
        iam.run_sql(master, 'CREATE ROLE "app-reporting" LOGIN IN ROLE "app"')

    with pytest.raises(tool.InvalidEvent, match="'app-reporting' are members of it"):
        iam.invoke(iam.event([user("app", auth="iam")]))

    assert not holds_rds_iam(iam, "app") and not holds_rds_iam(iam, "app-reporting")


def test_an_iam_user_is_a_grantor_and_ddl_owner_as_any_other(iam):
    memberships = inheriting(iam)
    users = [
        user("owner", auth="iam", grant_ddl=True, grant_privileges="SELECT,INSERT"),
        user("reader", grant_privileges="SELECT", grantor="owner"),
    ]

    iam.invoke(iam.event(users))
    run_as(iam, "owner", "CREATE TABLE owned (id int)")
    run_as(iam, "owner", "INSERT INTO owned VALUES (1)")

    with iam.login("secret-reader") as connection:
        assert iam.run_sql(connection, "SELECT id FROM owned") == [(1,)]
    assert not iam.can("secret-reader", "INSERT INTO owned VALUES (2)")
    assert iam.invoke(iam.event(users))["changed"] is False
    assert inheriting(iam) == memberships and not master_inherits_rds_iam(iam)

    deleted = iam.invoke(
        iam.event([user("reader", action="delete"), user("owner", action="delete")])
    )

    assert [u["result"] for u in deleted["users"]] == ["deleted", "deleted"]
    assert {"owner", "reader"}.isdisjoint(iam.roles())
    assert inheriting(iam) == memberships


def test_createrole_self_grant_does_not_make_the_master_inherit_an_iam_user(iam):
    """16+: the master's createrole_self_grant would grant it each role it creates, inheriting
    (before 16 there is no such setting, and the master is never a member of what it creates)."""
    if iam.major >= 16:
        with iam.superuser() as admin:
            master = sql.Identifier(iam.master).as_string(admin)
            iam.run_sql(admin, f"ALTER ROLE {master} SET createrole_self_grant = 'set, inherit'")

    iam.invoke(iam.event([user("app", auth="iam")]))

    assert holds_rds_iam(iam, "app")
    assert not master_inherits_rds_iam(iam)
    inherited = superuser_rows(iam, "SELECT pg_has_role(%s, 'app', 'USAGE')", iam.master)
    assert inherited == [(False,)]


def test_without_rds_iam_an_iam_user_is_refused(rds):
    with pytest.raises(tool.InvalidEvent, match="needs the role rds_iam"):
        rds.invoke(rds.event([user("app", auth="iam")]))

    assert "app" not in rds.roles()


def test_a_dry_run_shows_the_iam_statements(iam):
    raw = iam.event([user("app", auth="iam")], dry_run=True)

    report = iam.invoke(raw)

    assert (
        'CREATE ROLE "app" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD NULL'
        in report["sql"]
    )
    assert 'GRANT "rds_iam" TO "app"' in report["sql"]
    assert "app" not in iam.roles()


# --- MariaDB: other plugins stand in for RDS's ------------------------------------------------


@pytest.fixture
def plugin_account(maria):
    """Make `name`@'%' authenticate with `plugin` (ed25519 is installed first, as root)."""

    def make(name: str, plugin: str) -> None:
        with maria.root() as root:
            if plugin == "ed25519" and not maria.run_sql(
                root, "SELECT 1 FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'ed25519'"
            ):
                maria.run_sql(root, "INSTALL SONAME 'auth_ed25519'")
            using = " USING PASSWORD('not-the-tools-1')" if plugin == "ed25519" else ""
            maria.run_sql(root, f"CREATE USER %s@'%%' IDENTIFIED VIA {plugin}{using}", name)

    return make


def plugin_of(maria, name: str) -> str:
    with maria.root() as root:
        return maria.run_sql(root, "SELECT plugin FROM mysql.user WHERE User = %s", name)[0][0]


@pytest.mark.parametrize("plugin", ["ed25519", "unix_socket"])
@pytest.mark.parametrize(
    "how",
    [{}, {"action": "update"}, {"rotate_password": True}, {"verify_logins": True}],
    ids=["adopting", "update", "rotate_password", "verify_logins"],
)
def test_an_account_of_another_plugin_is_never_given_a_password(maria, plugin_account, plugin, how):
    plugin_account("app", plugin)
    extra = {"verify_logins": True} if "verify_logins" in how else {}
    keys = {k: v for k, v in how.items() if k != "verify_logins"}
    if "verify_logins" in how:
        maria.sm.create_secret(
            Name="secret-app", SecretString='{"username": "app", "password": "p4ssw0rd-app"}'
        )

    with pytest.raises(tool.InvalidEvent) as refused:
        maria.invoke(maria.event([user("app", grant_privileges="SELECT", **keys)], **extra))

    message = str(refused.value)
    assert f"'app' authenticates with plugin {plugin}" in message
    assert '"auth": "password"' in message and "Nothing was changed" in message
    assert plugin_of(maria, "app") == plugin
    assert maria.grants("app") == set()
    assert_secret_untouched(maria, "verify_logins" in how)


def test_declared_a_password_user_an_account_of_another_plugin_is_converted_and_back(
    maria, plugin_account
):
    plugin_account("app", "ed25519")
    users = [user("app", grant_privileges="SELECT", auth="password")]

    report = maria.invoke(maria.event(users))

    assert entry(report, "app")["secret"]["result"] == "created"
    assert plugin_of(maria, "app") == "mysql_native_password"
    with maria.login("secret-app") as connection:
        assert maria.run_sql(connection, "SELECT CURRENT_USER()") == [("app@%",)]
    assert maria.invoke(maria.event(users))["changed"] is False
    assert maria.invoke(maria.event([user("app", grant_privileges="SELECT")]))["changed"] is False


def test_an_iam_user_needs_the_aws_plugin_which_this_server_lacks(maria):
    with pytest.raises(tool.InvalidEvent, match="AWSAuthenticationPlugin, which is not loaded"):
        maria.invoke(maria.event([user("app", auth="iam")]))

    assert maria.user_names() == set()


# --- The event ----------------------------------------------------------------------------------


def problems(raw_user: dict, **top) -> list[str]:
    raw = {"secret_name": "s", "database_name": "d", "users": [raw_user], **top}
    return tool.read_event(raw)[1]


def test_auth_is_password_or_iam_in_any_case():
    assert (
        tool.parse_event(
            {"secret_name": "s", "database_name": "d", "users": [user("u", auth=" IAM ")]}
        )
        .users[0]
        .auth
        == "iam"
    )
    (problem,) = problems(user("u", auth="token"))
    assert "auth must be one of password, iam, not 'token'" in problem


def test_an_iam_user_needs_no_secret_name_and_gets_no_rotation_from_the_event():
    raw = {
        "secret_name": "s",
        "database_name": "d",
        "rotation": {"days": 30},
        "users": [{"db_user": "u", "auth": "iam"}],
    }

    (parsed,) = tool.parse_event(raw).users

    assert parsed.secret_name is None and parsed.rotation is None and parsed.iam


@pytest.mark.parametrize(
    ("keys", "said"),
    [
        ({"action": "update"}, "action update gives a new password"),
        ({"rotate_password": "yes"}, "rotate_password: an IAM user has no password"),
        ({"rotation": {"days": 7}}, "rotation: an IAM user has no password to rotate"),
    ],
)
def test_an_iam_user_has_no_password_to_change_or_rotate(keys, said):
    (problem,) = problems(user("u", auth="iam", **keys))
    assert said in problem


def test_an_iam_user_turning_rotation_off_or_deleted_is_fine():
    assert problems(user("u", auth="iam", rotation={"enabled": False})) == []
    assert problems(user("u", action="delete", auth="iam", rotate_password=True)) == []


def test_the_rds_db_connect_resource_comes_from_the_master_secrets_arn():
    target = tool.Target(
        engine="postgres",
        host="db.cluster-abc.eu-west-1.rds.amazonaws.com",
        port=5432,
        database="d",
        master_user="m",
        master_password="x",  # noqa: S106 - never used
        master_arn="arn:aws-cn:secretsmanager:cn-north-1:111122223333:secret:master-AbCdEf",
        ssl_mode="require",
    )

    policy = tool.iam_connect_policy(spec("app"), target)

    assert policy["action"] == "rds-db:connect"
    assert (
        policy["resource"] == "arn:aws-cn:rds-db:cn-north-1:111122223333:dbuser:<resource-id>/app"
    )
    unknown = dataclasses.replace(target, master_arn="not-an-arn")
    assert "<region>:<account-id>" in tool.iam_connect_policy(spec("app"), unknown)["resource"]
