"""One error contract: invalid input of any kind (the event, the secrets' contents) is exit
status 2 with a message naming the field, before anything is touched; a failure is exit
status 1 saying what it means; the command line never prints a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, SEED, tool, user
from lambda_function import InvalidEvent, parse_event

from dev.servers import free_port

CLI = [sys.executable, str(ROOT / "deploy" / "lambda_function.py")]


def event_of(*users: dict, **top) -> dict:
    users = users or (user("app"),)
    return {
        "secret_name": "master",
        "database_name": "app",
        "db_engine": "postgres",
        "users": list(users),
        **top,
    }


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    return caught.value.problems


@pytest.mark.parametrize("port", ["５", "²", "５４３２", "54 32", "-1", "99999", 5432.5, True])
def test_a_port_that_is_not_ascii_digits_is_invalid_input(port):
    assert problems_of(event_of(rds_port=port)) == [f"rds_port must be a port number, not {port!r}"]


def test_a_port_in_ascii_digits_is_taken():
    assert parse_event(event_of(rds_port=" 5432 ")).port == 5432


def test_a_whole_number_written_with_a_fraction_is_that_number():
    """JSON has one kind of number, and JSON Schema's "integer" takes 5432.0: so does the
    handler, wherever it takes a whole number or 0/1 for a boolean."""
    event = parse_event(
        event_of(
            user("app", grant_ddl=1.0, rotation={"days": 7.0}),
            rds_port=5432.0,
            secret_recovery_days=0.0,
            dry_run=0.0,
        )
    )
    assert (event.port, event.recovery_days, event.dry_run) == (5432, 0, False)
    assert event.users[0].ddl is True
    assert event.users[0].rotation and event.users[0].rotation.interval == "rate(7 days)"
    assert isinstance(event.port, int) and isinstance(event.users[0].rotation.days, int)


@pytest.mark.parametrize("region", ["us east 1", "US-EAST-1", "useast1", "us-east-1a", "x"])
def test_a_malformed_region_is_invalid_input(region):
    [problem] = problems_of(event_of(region=region))
    assert problem.startswith("region ") and "not an AWS region name" in problem


@pytest.mark.parametrize("region", ["us-east-1", "us-gov-west-1", "cn-north-1", "ap-southeast-5"])
def test_region_names_are_taken(region):
    assert parse_event(event_of(region=region)).region == region


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (event_of(rds_host="db\x00.example"), "rds_host"),
        (event_of(kms_key_id="alias/k\x00"), "kms_key_id"),
        (event_of(secret_tags={"team": "a\x00"}), "secret_tags.team"),
        (event_of(secret_tags={"te\x00am": "a"}), "a key of secret_tags"),
        (event_of(user("app", grant_privileges="SELECT\x00")), "users[0].grant_privileges"),
        (
            event_of(user("app", grant_privileges=["SELECT", "x\x00"])),
            "users[0].grant_privileges[1]",
        ),
        (event_of(user("a\x00b", "s")), "users[0].db_user"),
        (event_of(user("app", rotation={"schedule": "rate(1 days)\x00"})), "users[0].rotation"),
        (event_of(schemas=["public", "\x00"]), "schemas[1]"),
    ],
)
def test_a_nul_character_anywhere_is_invalid_input_naming_where(raw, where):
    [problem] = problems_of(raw)
    assert problem.startswith(where) and "NUL" in problem


def test_a_lone_surrogate_is_invalid_input():
    [problem] = problems_of(event_of(user("app", grantor="\ud800")))
    assert problem == "users[0].grantor contains a lone surrogate (not a character)"


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"x": value}
    return value


def test_a_deeply_nested_event_is_invalid_input_not_a_crash():
    [problem] = problems_of(event_of(secret_tags=nested(100_000)))
    assert "nested deeper than" in problem


def test_a_deeply_nested_event_file_exits_2_without_a_traceback(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"users": ' + "[" * 100_000 + "]" * 100_000 + "}")
    done = subprocess.run([*CLI, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "nested too deeply" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_cli_turns_an_unexpected_error_into_exit_1_without_a_traceback(
    tmp_path, monkeypatch, capsys
):
    def broken(*_args, **_kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(tool, "run", broken)
    monkeypatch.setattr(tool.LineHandler, "to_stderr", False)  # main() sets it: undone after
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event_of()))
    assert tool.main([str(path)]) == 1
    err = capsys.readouterr().err
    assert "unexpected error: KeyError: 'boom'" in err and "a re-run converges" in err


# --- unknown choices name the valid ones and the nearest -----------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"grant_privileges": "SELEC"},
            "user 'app': grant_privileges: unknown privilege SELEC (did you mean 'SELECT'?); "
            "the privileges are ALTER, CREATE, CREATE VIEW, DELETE, DROP, INDEX, INSERT, "
            "MAINTAIN, REFERENCES, SELECT, SHOW VIEW, TRIGGER, TRUNCATE, UPDATE, ALL",
        ),
        (
            {"grant_dll": True},
            "user 'app': unknown key 'grant_dll' (did you mean 'grant_ddl'?); a user's keys are "
            "action, auth, db_user, grant_ddl, grant_privileges, grantor, host, keep_account, "
            "reassign_to, rotate_password, rotation, user_secret_name",
        ),
        (
            {"grant_ddl": "yess"},
            "user 'app': grant_ddl must be a boolean (true/false/yes/no/1/0), not 'yess' "
            "(did you mean 'yes'?)",
        ),
        (
            {"action": "delet"},
            "user 'app': action must be one of create, update, delete, not 'delet' "
            "(did you mean 'delete'?)",
        ),
        (
            {"rotation": {"enable": True}},
            "user 'app': rotation: unknown key 'enable' (did you mean 'enabled'?); rotation's "
            "keys are days, duration, enabled, lambda_arn, rotate_immediately, schedule",
        ),
    ],
    ids=["privilege", "user key", "boolean", "action", "rotation key"],
)
def test_an_unknown_choice_in_a_user_lists_the_choices_and_the_nearest(change, expected):
    assert problems_of(event_of(user("app", **change))) == [expected]


def test_an_unknown_engine_suggests_the_nearest():
    assert problems_of(event_of(db_engine="postgress")) == [
        "db_engine 'postgress' is not one of postgres, postgresql, aurora-postgresql, mysql, "
        "aurora-mysql, mariadb (did you mean 'postgres'?)"
    ]


def test_an_unknown_event_key_and_tls_mode_suggest_the_nearest():
    problems = problems_of(event_of(databse_name="app", ssl_mode="verify_full"))
    assert problems[0].startswith(
        "unknown key 'databse_name' (did you mean 'database_name'?); the event's keys are "
        "$schema, database_name, db_engine,"
    )
    assert problems[1] == (
        "ssl_mode must be one of require, verify-full, disable, not 'verify_full' "
        "(did you mean 'verify-full'?)"
    )


def test_a_privilege_the_engine_lacks_suggests_the_engines_nearest():
    [problem] = problems_of(event_of(user("app", grant_privileges="SELECT,SHOW VIEW")))
    assert problem.startswith(
        "user 'app': grant_privileges: SHOW VIEW is not a PostgreSQL table privilege "
    )
    assert "(allowed: SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES" in problem


def test_nothing_is_suggested_when_nothing_is_near():
    [problem] = problems_of(event_of(user("app", grant_privileges="XYZZY")))
    assert "did you mean" not in problem and "the privileges are ALTER" in problem


def grantor_and_grantees(grantees: int, **grantor_keys) -> dict:
    """The seed's shape: one DDL user and many users it grants to."""
    users = [user("airflow-rw-ddl", grant_ddl=True, **grantor_keys)]
    users += [user(f"reader-{i}", grantor="airflow-rw-ddl") for i in range(grantees)]
    return event_of(*users)


def pg_state(*names: str) -> tool.PgState:
    roles = {n: tool.PgRole(n) for n in ("master", *names)}
    schema = tool.PgObject("schema", None, "public", "master")
    return tool.PgState(16, "master", roles, [schema], [])


def my_state(*names: str) -> tool.MyState:
    accounts = {(n, "%"): tool.MyAccount(n, "%") for n in ("master", *names)}
    return tool.MyState(True, True, True, True, accounts, {})


@pytest.mark.parametrize("engine", ["postgres", "mariadb"])
def test_a_grantor_with_its_own_problem_is_not_called_missing_by_its_grantees(engine):
    """The grantor's entry is refused (an unknown privilege); its 300 grantees are fine and
    say nothing: one problem, the true one."""
    raw = {**grantor_and_grantees(300, grant_privileges="SELEC"), "db_engine": engine}
    event, problems = tool.read_event(raw)
    event = tool.bind_engine(event, tool.DIALECTS[engine])
    if engine == "postgres":
        problems += tool.pg_state_problems(event, pg_state())
    else:
        problems += tool.my_state_problems(event, my_state())
    assert len(problems) == 1
    assert problems[0].startswith(
        "user 'airflow-rw-ddl': grant_privileges: unknown privilege SELEC"
    )


@pytest.mark.parametrize("engine", ["postgres", "mariadb"])
def test_a_missing_grantor_suggests_the_nearest_user_of_the_event(engine):
    raw = grantor_and_grantees(1)
    raw["users"][1]["grantor"] = "airflow-rw-dd1"
    event = tool.bind_engine(tool.parse_event(raw), tool.DIALECTS[engine])
    if engine == "postgres":
        problems = tool.pg_state_problems(event, pg_state())
        where = "user 'reader-0'"
    else:
        problems = tool.my_state_problems(event, my_state())
        where = "user 'reader-0'@'%'"
    assert problems == [
        f"{where}: grantor 'airflow-rw-dd1' does not exist (did you mean 'airflow-rw-ddl'?)"
    ]


# --- with the servers ----------------------------------------------------------------------


def test_a_numeric_password_in_a_user_secret_is_invalid_input_and_nothing_changes(rds):
    rds.sm.create_secret(
        Name="secret-app", SecretString=json.dumps({"username": "app", "password": 12345678})
    )
    roles_before = rds.roles()
    with pytest.raises(tool.InvalidEvent) as caught:
        rds.invoke(rds.event([user("app"), user("innocent")]))
    assert caught.value.problems == [
        "user 'app': secret 'secret-app' (AWSCURRENT): its password is a JSON int, not a "
        "string; correct the value or delete the secret"
    ]
    assert rds.roles() == roles_before
    assert len(rds.versions("secret-app")) == 1
    assert len(rds.sm.list_secrets()["SecretList"]) == 2  # the master's and this one


def test_a_privilege_the_engine_lacks_is_invalid_input_even_with_other_problems(db):
    """Found by the generated events: with a problem the engine check alone sees, the run went
    on to plan against the state (to report every problem at once), and the planner met a
    privilege it has no order for on a table: an unexpected error, not exit 2."""
    privilege = db.OTHER_ENGINES_PRIVILEGE
    with db.as_master() as connection:
        db.run_sql(connection, "CREATE TABLE t (id int)")
    event = db.event([user("app", grant_privileges=["SELECT", privilege])], rds_port="５")

    with pytest.raises(InvalidEvent) as caught:
        db.invoke(event)

    assert any(f"{privilege} is not a" in p for p in caught.value.problems)
    assert "rds_port must be a port number, not '５'" in caught.value.problems
    with pytest.raises(db.sm.exceptions.ResourceNotFoundException):
        db.sm.describe_secret(SecretId="secret-app")


def test_a_grantor_with_its_own_problem_is_the_only_problem(db):
    """The issue's case: an unknown privilege in the grantor's entry made each of its 300
    grantees say the grantor does not exist."""
    users = [user("airflow-rw-ddl", grant_ddl=True, grant_privileges="SELECT,SELEC")]
    users += [user(f"reader-{i}", grantor="airflow-rw-ddl") for i in range(300)]

    with pytest.raises(InvalidEvent) as caught:
        db.invoke(db.event(users))

    [problem] = caught.value.problems
    assert problem.startswith(
        "user 'airflow-rw-ddl': grant_privileges: unknown privilege SELEC (did you mean 'SELECT'?)"
    )
    assert len(db.sm.list_secrets()["SecretList"]) == 1  # the master's alone


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        ("missing", "does not exist"),
        ("not-json", "does not hold JSON"),
        ("list", "does not hold a JSON object"),
        ("bad-port", "port must be a port number"),
        ("numeric-password", "password must be a string"),
    ],
)
def test_a_missing_or_malformed_master_secret_is_invalid_input_naming_it(rds, code, meaning):
    values = {
        "not-json": "{oops",
        "list": "[1, 2]",
        "bad-port": json.dumps({"username": "m", "password": "p", "port": "５"}),
        "numeric-password": json.dumps({"username": "m", "password": 5}),
    }
    name = f"master-{code}"
    if code in values:
        rds.sm.create_secret(Name=name, SecretString=values[code])
    with pytest.raises(tool.InvalidEvent) as caught:
        rds.invoke(rds.event([user("app")], secret_name=name))
    [problem] = caught.value.problems
    assert problem.startswith(f"master secret {name!r}") and meaning in problem
    assert "app" not in rds.roles()


def test_the_cli_exits_2_naming_a_missing_master_secret(rds, tmp_path):
    path = tmp_path / "event.json"
    path.write_text(json.dumps(rds.event([user("app")], secret_name="no-such-master")))
    done = subprocess.run([*CLI, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "master secret 'no-such-master' does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()  # one problem, one line
    assert line.startswith("invalid event: master secret 'no-such-master'")


def connect_error(db, event: dict) -> str:
    """The run's ApplyError on `event`, checked to have changed nothing."""
    secrets_before = db.sm.list_secrets()["SecretList"]
    with pytest.raises(tool.ApplyError) as caught:
        db.invoke(event)
    assert db.sm.list_secrets()["SecretList"] == secrets_before
    return str(caught.value)


def lock_connection_said(db, message: str) -> None:
    """On PostgreSQL the first connection goes to database postgres, where the run takes its
    lock: the message says so, after the event's database (MySQL has no such detour)."""
    lock = " (through database postgres, where the run takes its lock): "
    assert (lock in message) == (db.ENGINE == "postgres"), message


def test_a_refused_connection_names_the_events_database_and_says_refused(db):
    """A wrong port: nothing listens there, the system answers at once with a reset. That is
    not a security group (which drops packets: a timeout), and the database is the event's."""
    port = free_port()
    message = connect_error(db, db.event([user("app")], rds_port=port))

    assert message.startswith(f"cannot connect to 127.0.0.1:{port}/{db.database} as '{db.master}'")
    lock_connection_said(db, message)
    assert (
        "connection refused: nothing accepts connections on that port: check rds_port (or the "
        "master secret's port) and that the database is running. Nothing was changed. "
        "(The driver said: "
    ) in message
    assert "Connection refused" in message.split("The driver said: ")[1]
    assert "unreachable" not in message and "security group" not in message
    assert "/postgres as" not in message


def test_a_master_password_that_does_not_log_in_is_named_with_the_events_database(db):
    value = db.secret(db.secret_name)
    db.sm.put_secret_value(
        SecretId=db.secret_name, SecretString=json.dumps({**value, "password": "not-it-9"})
    )
    message = connect_error(db, db.event([user("app")]))

    assert message.startswith(f"cannot connect to 127.0.0.1:{db.server.port}/{db.database} as ")
    lock_connection_said(db, message)
    assert "authentication failed: the master secret's username and password do not log in" in (
        message
    )
    assert "not-it-9" not in message


# An address never routed (RFC 3849's documentation prefix): the network answers it with an
# ICMP unreachable (No route to host), has no IPv6 at all (Network is unreachable), or drops it
# (a timeout): which one, and when, is the machine's network's to say.
UNROUTED = "2001:db8::1"
NETWORK_ANSWERS = {
    "No route to host": tool.NO_ROUTE,
    "Network is unreachable": tool.NO_ROUTE,
    "timeout expired": tool.TIMED_OUT,  # libpq
    "timed out": tool.TIMED_OUT,  # PyMySQL, as Python's socket says it
}


def test_a_connection_failure_says_what_the_network_said(db, monkeypatch):
    """No route, no network or a timeout: the message says the one the driver reported, with
    its own remedy, never one word for all of them."""
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "4")
    message = connect_error(db, db.event([user("app")], rds_host=UNROUTED, rds_port=5432))

    assert message.startswith(f"cannot connect to {UNROUTED}:5432/{db.database} as ")
    lock_connection_said(db, message)
    driver_said = message.split("(The driver said: ")[1]
    [meaning] = {text for words, text in NETWORK_ANSWERS.items() if words in driver_said}
    assert f": {meaning}" in message
    assert "the host is unreachable" not in message and "refused" not in message


PG_SAYS = 'connection to server at "10.0.0.5", port 5432 failed: {}'
MY_SAYS = """(2003, "Can't connect to MySQL server on '10.0.0.5' ({})")"""


@pytest.mark.parametrize(
    ("failures", "said", "meaning"),
    [
        (
            tool.PG_CONNECT_FAILURES,
            PG_SAYS.format("Connection refused\n\tIs the server running"),
            tool.CONNECTION_REFUSED,
        ),
        (
            tool.PG_CONNECT_FAILURES,
            PG_SAYS.format("No route to host\n\tIs the server running"),
            tool.NO_ROUTE,
        ),
        (tool.PG_CONNECT_FAILURES, PG_SAYS.format("Network is unreachable"), tool.NO_ROUTE),
        (tool.PG_CONNECT_FAILURES, PG_SAYS.format("timeout expired"), tool.TIMED_OUT),
        (
            tool.MY_CONNECT_FAILURES,
            MY_SAYS.format("[Errno 111] Connection refused"),
            tool.CONNECTION_REFUSED,
        ),
        (tool.MY_CONNECT_FAILURES, MY_SAYS.format("[Errno 113] No route to host"), tool.NO_ROUTE),
        (
            tool.MY_CONNECT_FAILURES,
            MY_SAYS.format("[Errno 101] Network is unreachable"),
            tool.NO_ROUTE,
        ),
        (tool.MY_CONNECT_FAILURES, MY_SAYS.format("timed out"), tool.TIMED_OUT),
    ],
    ids=[
        "pg-refused",
        "pg-no-route",
        "pg-no-network",
        "pg-timeout",
        "my-refused",
        "my-no-route",
        "my-no-network",
        "my-timeout",
    ],
)
def test_each_driver_words_for_a_failed_connection_have_their_own_meaning(failures, said, meaning):
    """libpq's and PyMySQL's words (as each prints them) for the three ways TCP fails; only a
    timeout says how long was waited, and only it blames the security group."""
    message = tool.connect_failure("h:5432/app as 'm'", said, failures, tool.Settings())

    assert message.startswith(f"cannot connect to h:5432/app as 'm': {meaning}")
    assert message.endswith(f"Nothing was changed. (The driver said: {said})")
    assert ("no answer within DB_CONNECT_TIMEOUT" in message) == (meaning == tool.TIMED_OUT)
    assert ("security group" in message) == (meaning == tool.TIMED_OUT)


def test_a_mistyped_database_is_invalid_input_on_every_engine_and_only_that(db):
    """After a first run, the user secrets describe `airflow`; an event that says `airflw`
    is told the one thing that is wrong (exit 2, as all invalid input), not that the secrets
    describe another database or that move_secrets would help; nothing changes."""
    assert db.cli(db.seed_event()).returncode == 0
    names = [u["user_secret_name"] for u in SEED["users"]]
    versions = {name: db.versions(name) for name in names}

    done = db.cli(db.seed_event(database_name="airflw"))

    assert done.returncode == 2, done.stderr
    said = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert said == ["invalid event: database 'airflw' does not exist on this server"]
    assert "move_secrets" not in done.stderr
    assert {name: db.versions(name) for name in names} == versions


def test_a_missing_database_is_reported_with_the_events_other_problems(db):
    """The event's own problems come with it; a grantor the event does not declare could not be
    looked up, and is said so."""
    event = db.event(
        [user("app", colour="blue"), user("ro", grantor="owner")], database_name="nowhere"
    )
    with pytest.raises(InvalidEvent) as caught:
        db.invoke(event)

    unknown_key, missing, grantor = caught.value.problems
    assert unknown_key.startswith("user 'app': unknown key 'colour'")
    assert missing == "database 'nowhere' does not exist on this server"
    assert grantor == (
        "user 'ro': grantor 'owner' is not declared in the event and was not looked up on the "
        "server (the database does not exist): it must exist there"
    )


def test_every_problem_at_once_environment_event_grantor_and_master_secret(rds, tmp_path):
    """One event with a bad environment variable, an unknown key, a grantor it neither declares
    nor lets the server be asked about (its master secret is missing), and that missing master
    secret: one exit 2 naming all four, and nothing written."""
    event = rds.event(
        [user("app", grantor="owner"), user("ro", colour="blue")], secret_name="no-such-master"
    )
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    done = subprocess.run(
        [*CLI, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DB_CONNECT_TIMEOUT": "soon"},
    )

    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "invalid event:"
    problems = [line.removeprefix("- ") for line in lines[1:]]
    assert len(problems) == 4, problems
    assert problems[0].startswith("environment variable DB_CONNECT_TIMEOUT must be a number")
    assert problems[1].startswith("user 'ro': unknown key 'colour'; a user's keys are ")
    assert problems[2].startswith("master secret 'no-such-master' does not exist")
    assert problems[3] == (
        "user 'app': grantor 'owner' is not declared in the event and was not looked up on the "
        "server (the master secret could not be used): it must exist there"
    )
    assert [s["Name"] for s in rds.sm.list_secrets()["SecretList"]] == [rds.secret_name]


def test_a_typod_key_and_a_grantor_missing_on_the_server_are_reported_together(rds):
    """A user entry with an unknown key still has its relations checked against the state."""
    event = rds.event([user("app", grantor="nobody", colour="blue")])

    with pytest.raises(InvalidEvent) as caught:
        rds.invoke(event)

    [unknown_key, missing_grantor] = caught.value.problems
    assert unknown_key.startswith("user 'app': unknown key 'colour'; a user's keys are ")
    assert missing_grantor == "user 'app': grantor 'nobody' does not exist"
    assert "app" not in rds.roles()


def test_the_events_problems_are_reported_without_aws_credentials(tmp_path):
    """The event is checked before anything needs AWS: a typo'd engine is the answer, not the
    missing credentials."""
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event_of(db_engine="postgress", rds_host="db.example")))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environment.update(
        AWS_REGION="us-east-1",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )

    done = subprocess.run(
        [*CLI, str(path)], capture_output=True, text=True, timeout=60, env=environment
    )

    assert done.returncode == 2, done.stderr
    assert "db_engine 'postgress' is not one of" in done.stderr
    assert "nothing else was checked" in done.stderr and "credentials" in done.stderr
    assert "Traceback" not in done.stderr
