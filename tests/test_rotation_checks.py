"""Rotation checks that match what AWS's multi-user functions really do (issue 8 item 6): a
MySQL/MariaDB account at a host other than '%' cannot be rotated by the AWS function, a MySQL
clone name over the function's USERNAME_CHARACTER_LIMIT neither, and a rotation that leaves
AWSPENDING on the AWSCURRENT version is a finished rotation, not a change of the tool's."""

from __future__ import annotations

import pymysql
import pytest
from aws_rotation import MultiUserRotation
from conftest import user

from tests.conftest import tool


def aws_function(monkeypatch, engine: str, arn: str) -> None:
    """The deployment names the engine's AWS rotation function (users give no lambda_arn)."""
    monkeypatch.setenv(f"ROTATION_LAMBDA_ARN_{engine.upper()}", arn)


def test_a_host_restricted_account_cannot_rely_on_the_aws_function(
    maria, rotation_function, monkeypatch
):
    aws_function(monkeypatch, "mariadb", rotation_function)
    event = maria.event(
        [user("app", grant_privileges="SELECT", host="10.0.%")], rotation={"days": 30}
    )

    with pytest.raises(tool.InvalidEvent) as invalid:
        maria.invoke(event)

    assert (
        "needs host '%': it runs SHOW GRANTS FOR 'app', which means 'app'@'%', and fails for "
        "'app'@'10.0.%'" in str(invalid.value)
    )
    assert maria.accounts() == set()
    assert maria.sm.list_secrets()["SecretList"][0]["Name"] == maria.secret_name
    assert len(maria.sm.list_secrets()["SecretList"]) == 1


def test_a_host_restricted_account_may_rotate_with_a_function_of_its_own(maria, rotation_function):
    """Allowed with a lambda_arn: the tool cannot know what that function does. The AWS
    function, given the same secret, fails where the tool said it would."""
    event = maria.event(
        [user("app", grant_privileges="SELECT", host="127.0.0.1")],
        rotation={"lambda_arn": rotation_function},
    )

    assert maria.invoke(event)["users"][0]["result"] == "created"
    maria.end_test_rotation("secret-app")
    with pytest.raises(pymysql.err.OperationalError) as refused:
        MultiUserRotation(maria.sm, "mariadb").rotate("secret-app")
    assert refused.value.args[0] == 1141  # There is no such grant defined for user 'app' on '%'
    assert maria.invoke(event)["changed"] is False


def mysql_event(maria, name: str, **extra):
    """A MySQL 8 event, checked and planned against the MariaDB server (a dry run: MySQL's
    dialect only plans then)."""
    return {
        **maria.event([user(name, grant_privileges="SELECT")], rotation={"days": 30}),
        "db_engine": "mysql",
        "dry_run": True,
        **extra,
    }


def test_a_mysql_clone_over_the_aws_functions_16_characters_is_refused(
    maria, rotation_function, monkeypatch
):
    aws_function(monkeypatch, "mysql", rotation_function)

    with pytest.raises(tool.InvalidEvent) as invalid:
        maria.invoke(mysql_event(maria, "eleven_char"))

    message = str(invalid.value)
    assert "the clone name 'eleven_char_clone' is longer than the 16 characters" in message
    assert "ROTATION_USERNAME_LIMIT_MYSQL" in message
    assert maria.invoke(mysql_event(maria, "ten_chars_"))["status"] == "dry_run"
    # a function of the event's own has its own rules
    own = mysql_event(maria, "eleven_char", rotation={"lambda_arn": rotation_function})
    assert maria.invoke(own)["status"] == "dry_run"
    assert maria.accounts() == set()


def test_a_deployment_that_raised_the_mysql_limit_declares_it(
    maria, rotation_function, monkeypatch
):
    aws_function(monkeypatch, "mysql", rotation_function)
    monkeypatch.setenv("ROTATION_USERNAME_LIMIT_MYSQL", "20")

    assert maria.invoke(mysql_event(maria, "fourteen_chars"))["status"] == "dry_run"
    with pytest.raises(tool.InvalidEvent, match="'sixteen_chars_xx_clone' is longer than the 20"):
        maria.invoke(mysql_event(maria, "sixteen_chars_xx"))


# AWSPENDING left on the AWSCURRENT version -------------------------------------------------


def rotated_leaving_pending(db, rotation_function: str, secret: str) -> dict:
    """Rotation on for one user, then an AWS rotation whose finishSecret leaves AWSPENDING
    on the version it made AWSCURRENT."""
    event = db.event([user("app", secret, grant_privileges="SELECT")])
    event["rotation"] = {"lambda_arn": rotation_function, "days": 30}
    db.invoke(event)
    db.end_test_rotation(secret)
    token = MultiUserRotation(db.sm, db.ENGINE, leave_pending=True).rotate(secret)
    assert sorted(db.versions(secret)[token]) == ["AWSCURRENT", "AWSPENDING"]
    return event


def test_pending_on_current_is_a_finished_rotation(db, rotation_function):
    event = rotated_leaving_pending(db, rotation_function, "secret-app")
    before = db.versions("secret-app")

    report = db.invoke(event)  # a re-run changes nothing

    assert report["changed"] is False and report["stats"]["sql_statements"] == 0
    assert db.versions("secret-app") == before
    assert db.secret("secret-app")["username"] == "app_clone"
    assert db.can("secret-app", "SELECT 1")

    event["users"][0]["action"] = "update"  # a new password is not taken for our own change
    report = db.invoke(event)
    changes = report["users"][0]["changes"]
    assert "new password of app_clone" in changes
    assert not any("interrupted" in change for change in changes)
    assert db.can("secret-app", "SELECT 1")

    del event["users"][0]["action"]  # and AWS accepts new rotation settings
    event["rotation"]["days"] = 7
    report = db.invoke(event)
    assert report["users"][0]["rotation"] == "updated"
    db.end_test_rotation("secret-app")
    assert db.invoke(event)["changed"] is False
