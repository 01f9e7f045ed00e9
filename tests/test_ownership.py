"""Whose secrets are whose (docs/secrets-and-rotation.md, docs/postgresql.md), on real
PostgreSQL (14 to 18) and MariaDB, every scenario written once and run on both:
- the master secret is found by any name Secrets Manager takes, RDS's own `rds!db-...`
  included, whose value holds only a username and a password;
- a user secret is one account's: it describes the database it was made for, and serves
  every other database of the server its account is recorded on, never repointed; at
  another endpoint it is refused before anything changes, unless the event says the
  database moved (move_secrets);
- an account has one password on its server: a second secret for it is refused up front;
- a delete that names no secret finds the user's secret by its tags and deletes it too."""

from __future__ import annotations

import json
import uuid

from conftest import SEED, user

DDL, DML, RO = (u["user_secret_name"] for u in SEED["users"])
SECRETS = (DDL, DML, RO)


def cli_report(db, event: dict) -> dict:
    done = db.cli(event)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def snapshot(db) -> dict:
    """Every user secret's value and versions: what a refused event must leave as it was."""
    return {name: (db.secret(name), db.versions(name)) for name in SECRETS}


def create_database(db, name: str) -> None:
    with db.as_master() as connection:
        quoted = f'"{name}"' if db.ENGINE == "postgres" else f"`{name}`"
        db.run_sql(connection, f"CREATE DATABASE {quoted}")


def test_an_rds_managed_master_secret_works_by_name(db):
    """RDS's ManageMasterUserPassword secret: named rds!db-<uuid>, username and password only
    (so the event gives host, port and engine), tagged with the instance it belongs to."""
    master = db.secret(db.secret_name)
    name = f"rds!db-{uuid.uuid4()}"
    db.sm.create_secret(
        Name=name,
        SecretString=json.dumps({"username": master["username"], "password": master["password"]}),
        Tags=[{"Key": "aws:rds:primaryDBInstanceArn", "Value": "arn:aws:rds:us-east-1:1:db:x"}],
    )
    report = cli_report(db, db.seed_event(secret_name=name))
    assert [u["result"] for u in report["users"]] == ["created"] * 3
    assert all(db.can(secret, "SELECT 1") for secret in SECRETS)


def test_another_databases_event_naming_the_same_secrets_shares_them(db):
    """One account, one secret, any number of databases: the server's record says which
    secret manages each account, so another database's event naming the same secrets grants
    there, and neither changes a password nor repoints a secret."""
    cli_report(db, db.seed_event())
    before = snapshot(db)
    create_database(db, "second")

    shared = cli_report(db, db.seed_event(database_name="second"))

    assert [u["result"] for u in shared["users"]] == ["updated"] * 3
    assert [u["secret"]["result"] for u in shared["users"]] == ["unchanged"] * 3
    assert snapshot(db) == before
    assert all(db.can(secret, "SELECT 1") for secret in SECRETS)
    for name in SECRETS:
        value = db.secret(name)
        with db.connect(value["username"], value["password"], "second") as connection:
            assert db.run_sql(connection, "SELECT 1") == [(1,)]
    assert cli_report(db, db.seed_event(database_name="second"))["changed"] is False
    assert cli_report(db, db.seed_event())["changed"] is False


def test_a_moved_endpoint_is_followed_only_when_the_event_says_so(db):
    cli_report(db, db.seed_event())
    for name in SECRETS:  # as if the secrets were written when the database lived elsewhere
        value = {**db.secret(name), "host": "old-endpoint.example", "port": 1234}
        db.sm.put_secret_value(SecretId=name, SecretString=json.dumps(value))
    before = snapshot(db)

    refused = db.cli(db.seed_event())
    assert refused.returncode == 2
    assert "host 'old-endpoint.example', not '127.0.0.1'; port '1234'" in refused.stderr
    assert "give move_secrets: true" in refused.stderr
    assert snapshot(db) == before

    moved = cli_report(db, db.seed_event(move_secrets=True))
    assert moved["changed"] is True
    assert {db.secret(name)["host"] for name in SECRETS} == {db.server.host}
    assert all(db.can(secret, "SELECT 1") for secret in SECRETS)
    assert cli_report(db, db.seed_event())["changed"] is False


def test_a_second_secret_for_an_account_is_refused(db):
    cli_report(db, db.seed_event())
    create_database(db, "second")
    before = snapshot(db)
    event = db.seed_event(database_name="second")
    event["users"] = [user("airflow-ro-dml", "second-ro-secret", grant_privileges="SELECT")]

    refused = db.cli(event)

    assert refused.returncode == 2
    assert "its account is managed through secret" in refused.stderr
    assert "second-ro-secret" in refused.stderr
    assert snapshot(db) == before
    assert db.can(RO, "SELECT 1")  # the first database's secret still logs in
    assert "second-ro-secret" not in [s["Name"] for s in db.sm.list_secrets()["SecretList"]]


def test_a_delete_that_names_no_secret_deletes_the_users_secret(db):
    cli_report(db, db.seed_event())
    event = db.seed_event()
    event["users"] = [{"db_user": "airflow-ro-dml", "action": "delete"}]

    report = cli_report(db, event)

    (deleted,) = report["users"]
    assert deleted["result"] == "deleted"
    assert deleted["secret"]["found_by_tags"] is True
    assert deleted["secret"]["result"] == "deleted"
    assert "airflow-ro-dml" not in db.user_names()
    assert "DeletedDate" in db.sm.describe_secret(SecretId=RO)
    again = cli_report(db, event)
    assert again["users"][0]["changes"] == ["no secret of the tool's found for it by its tags"]
    assert again["changed"] is False


def test_the_tags_say_whose_secret_it_is_whatever_the_names(rds):
    """Names tag values cannot hold are tagged by their digest, so every name can be found."""
    name = "odd'name\\\u00e9"
    rds.invoke(rds.event([user(name, "odd-secret")]))
    tags = {t["Key"]: t["Value"] for t in rds.sm.describe_secret(SecretId="odd-secret")["Tags"]}
    assert tags["managed-by"] == "rds-initializer"
    assert tags["rds-initializer:user"].startswith("sha256:")
    assert tags["rds-initializer:server"] == f"postgres/127.0.0.1:{rds.server.port}"
    assert tags["rds-initializer:database"] == rds.database
    report = rds.invoke(rds.event([{"db_user": name, "action": "delete"}]))
    assert report["users"][0]["secret"]["result"] == "deleted"
