"""The ways RDS lays out a PostgreSQL database (docs/postgresql.md, its layouts), each run
through the command line as a user would: the seed event, a re-run, a new password, a
narrowing and a delete work on every layout; where the master truly cannot act, the event is
refused before anything changes, with a remedy a real role can run.

Layouts (tests/conftest.py PG_LAYOUTS), on PostgreSQL 14 to 18:
- template1: the database made by the master from template1 (RDS's default);
- template0: made from template0 (Terraform's default; pg_dump -C). On 14 its public schema
  belongs to the platform's superuser (rdsadmin on RDS), and PUBLIC may use and create in it;
- app-owner: owned by an application role the master created; on 15+ public belongs to
  pg_database_owner, which stands for that role;
- foreign-role: the DDL user was made by another admin role before; on 16+ the master may not
  grant it, alter it or act as it without ADMIN OPTION;
- rds-superuser: template1, with the master a member of rds_superuser (which holds
  pg_read_all_data and pg_write_all_data from 15 on), as every RDS master is."""

from __future__ import annotations

import json

import pytest
from conftest import SEED, open_session, user
from psycopg2 import sql

DDL, DML, RO = (u["user_secret_name"] for u in SEED["users"])
WORKING_LAYOUTS = ["template1", "template0", "app-owner", "rds-superuser"]


def run(rds, event: dict, *args: str) -> dict:
    """The command line's report; fails the test, showing stderr, when it did not exit 0."""
    done = rds.cli(event, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def acting_memberships(rds) -> set[tuple]:
    """The master's memberships that let it act as a role: on 16+ the ADMIN OPTION a creator
    holds on the roles it made (neither INHERIT nor SET) is PostgreSQL's own, not the run's."""
    return {m for m in rds.master_memberships() if rds.major < 16 or m[2] or m[3]}


def ddl_creates_a_table(rds, name: str) -> None:
    with rds.login(DDL) as connection:
        rds.run_sql(connection, f"CREATE TABLE {name} (id serial PRIMARY KEY, x int)")


def the_seed_access_holds(rds, table: str) -> None:
    assert rds.can(DML, f"INSERT INTO {table} (x) VALUES (1)")
    assert rds.can(DML, f"UPDATE {table} SET x = 2")
    assert rds.can(RO, f"SELECT * FROM {table}")
    assert not rds.can(RO, f"INSERT INTO {table} (x) VALUES (3)")


@pytest.mark.parametrize("rds", WORKING_LAYOUTS, indirect=True)
def test_the_seed_event_works_and_a_rerun_changes_nothing(rds):
    memberships = acting_memberships(rds)
    report = run(rds, rds.seed_event())
    assert acting_memberships(rds) == memberships  # what it took for the run, it gave back
    assert [u["result"] for u in report["users"]] == ["created"] * 3
    ddl_creates_a_table(rds, "later")
    the_seed_access_holds(rds, "later")

    again = run(rds, rds.seed_event())
    assert again["changed"] is False
    assert again["stats"]["sql_statements"] == 0


@pytest.mark.parametrize("rds", WORKING_LAYOUTS, indirect=True)
def test_a_new_password_a_narrowing_and_a_delete_work(rds):
    run(rds, rds.seed_event())
    ddl_creates_a_table(rds, "t")
    old_password = rds.secret(RO)["password"]

    seed = rds.seed_event()
    seed["users"][2]["action"] = "update"  # the read-only user gets a new password
    seed["users"][1]["grant_privileges"] = "SELECT"  # the DML user is narrowed to reading
    report = run(rds, seed)
    assert rds.secret(RO)["password"] != old_password
    assert rds.can(RO, "SELECT * FROM t")
    assert rds.can(DML, "SELECT * FROM t")
    assert not rds.can(DML, "INSERT INTO t (x) VALUES (1)")
    assert report["changed"] is True

    seed = rds.seed_event()
    seed["users"] = [user("airflow-ro-dml", RO, action="delete")]
    run(rds, seed)
    assert "airflow-ro-dml" not in rds.roles()
    assert "DeletedDate" in rds.sm.describe_secret(SecretId=RO)


@pytest.mark.parametrize("rds", ["template0"], indirect=True)
def test_what_public_holds_beyond_the_event_is_a_warning_not_a_failure(rds):
    report = run(rds, rds.seed_event())
    warnings = report["warnings"]
    if rds.major >= 15:
        assert warnings == []  # 15+: PUBLIC may only use public
        return
    with rds.superuser() as connection:
        owner = rds.run_sql(
            connection, "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public'"
        )
    assert owner == [("postgres",)]  # rdsadmin's part, played by the bootstrap superuser
    assert len(warnings) == 1
    assert warnings[0].startswith("PUBLIC holds CREATE on schema public: every role has it")
    assert "'airflow-rw-dml', 'airflow-ro-dml'" in warnings[0]
    assert rds.can(RO, "CREATE TABLE made_through_public (x int)")  # the warning's point


@pytest.mark.parametrize("rds", ["app-owner"], indirect=True)
def test_public_of_a_database_owned_by_an_app_role_is_granted_as_that_role(rds):
    run(rds, rds.seed_event())
    with rds.superuser() as connection:
        owner = rds.run_sql(
            connection,
            "SELECT datdba::regrole::text FROM pg_database WHERE datname = %s",
            rds.database,
        )
        how = "SET" if rds.major >= 16 else "MEMBER"  # 16+: the creator's ADMIN stays
        acts_as = rds.run_sql(
            connection, f"SELECT pg_has_role(%s, 'app_owner', '{how}')", rds.master
        )
    assert owner == [("app_owner",)]
    assert acts_as == [(False,)]  # the membership taken to grant as app_owner was given back
    assert rds.can(DDL, "CREATE TABLE made_by_ddl (x int)")
    # On 14 public comes from template1, the master's, where PUBLIC may create (a warning).
    assert rds.can(RO, "CREATE TABLE made_by_ro (x int)") is (rds.major < 15)


@pytest.mark.parametrize("rds", ["foreign-role"], indirect=True)
def test_a_role_made_by_another_admin_is_refused_on_16_with_a_remedy_that_works(rds):
    if rds.major < 16:
        run(rds, rds.seed_event())  # before 16, CREATEROLE may manage any non-superuser
        ddl_creates_a_table(rds, "later")
        the_seed_access_holds(rds, "later")
        return
    roles_before = rds.roles()
    refused = rds.cli(rds.seed_event())
    assert refused.returncode == 2
    assert (
        f"""run GRANT "airflow-rw-ddl" TO "{rds.master}" WITH ADMIN OPTION, INHERIT FALSE, """
        "SET FALSE as 'old_admin', which holds ADMIN OPTION on it" in refused.stderr
    )
    assert rds.roles() == roles_before
    assert rds.sm.list_secrets()["SecretList"] == [
        s for s in rds.sm.list_secrets()["SecretList"] if s["Name"] == rds.secret_name
    ]

    with open_session(**rds.server.dsn(user="old_admin", password="old-admin-pw")) as old:
        old.cursor().execute(
            sql.SQL("GRANT {} TO {} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE").format(
                sql.Identifier("airflow-rw-ddl"), sql.Identifier(rds.master)
            )
        )
    run(rds, rds.seed_event())
    ddl_creates_a_table(rds, "later")
    the_seed_access_holds(rds, "later")
