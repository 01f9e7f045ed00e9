"""Reading the user secrets in bulk (issue 10): what a run costs in Secrets Manager calls, and
how a ListSecrets answer that lags behind the writes (it "might not reflect changes from the
last five minutes") is caught by the strongly consistent reads. The lag is played by giving
read_states a list taken before the change."""

from __future__ import annotations

import json

import botocore.exceptions
import pytest
from conftest import tool, user
from lambda_function import (
    VERSION_PREFIX,
    ApplyError,
    RateLimiter,
    SecretsManager,
    Settings,
    calls_per_second,
    name_prefix_chains,
)


def create(sm, name: str, username: str = "u", **keys) -> str:
    value = json.dumps({"username": username, "password": f"password-of-{username}"})
    return sm.create_secret(Name=name, SecretString=value, **keys)["VersionId"]


def listed_now(sm, *names: str) -> list[dict]:
    """What ListSecrets says of the names now: replayed later, it is a list that lags."""
    return [e for e in sm.list_secrets()["SecretList"] if e["Name"] in names]


def reader_with_stale_list(entries: list[dict]) -> SecretsManager:
    client = SecretsManager("us-east-1")
    client._list = lambda prefixes: entries  # type: ignore[method-assign]
    return client


def test_a_no_op_run_of_45_users_makes_at_most_n_over_8_plus_10_calls_and_no_write(rds):
    users = [user(f"u{i:02}", f"app/u{i:02}", grant_privileges="SELECT") for i in range(45)]
    rds.invoke(rds.event(users))

    report = rds.invoke(rds.event(users))

    calls = report["stats"]["aws_calls"]
    assert report["changed"] is False
    assert sum(calls.values()) <= 45 / 8 + 10
    # the master secret, one list page, three batch reads of 20: nothing described, no write
    assert calls == {"GetSecretValue": 1, "ListSecrets": 1, "BatchGetSecretValue": 3}


def test_a_first_run_describes_no_secret_the_read_by_id_did_not_find(db):
    users = [user(f"u{i:02}", f"app/u{i:02}", grant_privileges="SELECT") for i in range(25)]

    report = db.invoke(db.event(users))

    calls = report["stats"]["aws_calls"]
    assert "DescribeSecret" not in calls
    assert calls["CreateSecret"] == 25
    assert calls["BatchGetSecretValue"] == 2
    assert db.logs_in("u07", db.secret("app/u07")["password"])


def test_a_new_users_secret_without_a_value_is_given_the_password(db, monkeypatch):
    """A read by id answers "not found" for it as for no secret: CreateSecret tells them apart,
    and the secret is then written as a described one would have been. moto's list shows a
    secret at once; the list is left out here, as a list that lags would leave it out."""
    monkeypatch.setenv("SECRETS_LIST_READS", "false")
    db.sm.create_secret(Name="app/v")
    event = db.event([user("v", "app/v", grant_privileges="SELECT")])
    rehearsed = db.invoke({**event, "dry_run": True})  # which cannot ask CreateSecret: described

    report = db.invoke(event)

    calls = report["stats"]["aws_calls"]
    assert (calls["CreateSecret"], calls["DescribeSecret"], calls["PutSecretValue"]) == (1, 1, 1)
    assert rehearsed["users"][0]["secret"] == report["users"][0]["secret"]  # result: updated
    assert db.secret("app/v")["username"] == "v"
    assert db.logs_in("v", db.secret("app/v")["password"])
    assert db.invoke(db.event([user("v", "app/v", grant_privileges="SELECT")]))["changed"] is False


def test_a_secret_made_by_someone_else_after_the_read_is_not_overwritten(db, monkeypatch):
    theirs = {"username": "w", "password": "theirs-Pa55word!"}
    write = tool.SecretsManager.write

    def another_caller_first(self, operation, **kwargs):
        if operation == "create_secret" and kwargs["Name"] == "app/w":
            db.sm.create_secret(Name="app/w", SecretString=json.dumps(theirs))
        return write(self, operation, **kwargs)

    monkeypatch.setattr(tool.SecretsManager, "write", another_caller_first)
    event = db.event([user("w", "app/w", grant_privileges="SELECT")])

    with pytest.raises(ApplyError, match="made by someone else after this run found no secret"):
        db.invoke(event)

    assert db.secret("app/w") == theirs
    assert not db.logs_in("w", theirs["password"])  # no account was made
    monkeypatch.undo()
    assert db.invoke(event)["changed"] is True  # the re-run reads it, and takes its password
    assert db.logs_in("w", theirs["password"])


def test_an_existing_account_or_a_delete_never_rests_on_a_read_by_ids_not_found(db, monkeypatch):
    """Only accounts still to be created go without the description."""
    db.invoke(db.event([user("a", "app/a"), user("d", "app/d")]))
    db.sm.delete_secret(SecretId="app/d", ForceDeleteWithoutRecovery=True)
    described = []
    describe = tool.SecretsManager.described
    monkeypatch.setattr(
        tool.SecretsManager,
        "described",
        lambda self, names: described.extend(names) or describe(self, names),
    )
    event = db.event(
        [user("a", "app/a-new"), user("d", "app/d", action="delete"), user("n", "app/n")]
    )

    with pytest.raises(tool.InvalidEvent, match="app/a"):
        db.invoke(event)

    assert sorted(described) == ["app/a-new", "app/d"]


def test_a_secret_missing_from_the_list_is_described(secretsmanager):
    create(secretsmanager, "old", "a")
    stale = listed_now(secretsmanager, "old")
    create(secretsmanager, "new", "b")  # created after the list was taken
    client = reader_with_stale_list(stale)

    states = client.read_states(["old", "new", "never"])

    assert states["new"].exists and states["new"].value["username"] == "b"
    assert states["old"].value["username"] == "a"
    assert states["never"].exists is False
    assert client.calls == {"BatchGetSecretValue": 1, "DescribeSecret": 2}


def test_a_listed_awspending_that_is_gone_is_not_acted_on(secretsmanager):
    create(secretsmanager, "s")
    ours = f"{VERSION_PREFIX}{'1' * 36}"
    secretsmanager.put_secret_value(
        SecretId="s",
        SecretString='{"username": "u", "password": "new"}',
        ClientRequestToken=ours,
        VersionStages=["AWSPENDING"],
    )
    stale = listed_now(secretsmanager, "s")
    secretsmanager.update_secret_version_stage(
        SecretId="s", VersionStage="AWSPENDING", RemoveFromVersionId=ours
    )

    state = reader_with_stale_list(stale).read_states(["s"])["s"]

    assert state.pending_version is None and not state.pending_is_ours


def test_our_awspending_is_found_even_when_the_list_predates_it(secretsmanager):
    """The list is from before the promotion that made our version AWSCURRENT and before the
    AWSPENDING of a second change: the batch read's AWSCURRENT differs, so it is described."""
    first = create(secretsmanager, "s")
    stale = listed_now(secretsmanager, "s")
    promoted = secretsmanager.put_secret_value(
        SecretId="s", SecretString='{"username": "u", "password": "second"}'
    )["VersionId"]
    ours = f"{VERSION_PREFIX}{'2' * 36}"
    secretsmanager.put_secret_value(
        SecretId="s",
        SecretString='{"username": "u", "password": "third"}',
        ClientRequestToken=ours,
        VersionStages=["AWSPENDING"],
    )

    state = reader_with_stale_list(stale).read_states(["s"])["s"]

    assert promoted != first and state.current_version == promoted
    assert state.value["password"] == "second"
    assert state.pending_version == ours and state.pending_value["password"] == "third"


def test_awspending_on_the_current_version_shows_in_the_batch_read(secretsmanager):
    """A secret created without a value, then staged: its first version is AWSCURRENT and
    AWSPENDING at once. The batch read's labels show it though the list does not."""
    secretsmanager.create_secret(Name="s")
    ours = f"{VERSION_PREFIX}{'3' * 36}"
    secretsmanager.put_secret_value(
        SecretId="s",
        SecretString='{"username": "u", "password": "p1"}',
        ClientRequestToken=ours,
        VersionStages=["AWSPENDING"],
    )
    entry = listed_now(secretsmanager, "s")[0]
    entry["SecretVersionsToStages"] = {ours: ["AWSCURRENT"]}  # lagging: no AWSPENDING yet
    client = reader_with_stale_list([entry])

    state = client.read_states(["s"])["s"]

    assert state.pending_version == ours and state.pending_is_ours
    assert client.calls["DescribeSecret"] == 1


def test_a_secret_deleted_since_the_list_was_taken_is_seen_as_deleted(secretsmanager):
    create(secretsmanager, "s")
    stale = listed_now(secretsmanager, "s")
    secretsmanager.delete_secret(SecretId="s", RecoveryWindowInDays=7)

    state = reader_with_stale_list(stale).read_states(["s"])["s"]

    assert state.exists and state.scheduled_for_deletion and state.value is None


def test_a_secret_restored_since_the_list_was_taken_is_seen_as_restored(secretsmanager):
    create(secretsmanager, "s")
    secretsmanager.delete_secret(SecretId="s", RecoveryWindowInDays=7)
    stale = [
        e
        for e in secretsmanager.list_secrets(IncludePlannedDeletion=True)["SecretList"]
        if e["Name"] == "s"
    ]
    secretsmanager.restore_secret(SecretId="s")

    state = reader_with_stale_list(stale).read_states(["s"])["s"]

    assert state.exists and not state.scheduled_for_deletion and state.value["username"] == "u"


def test_a_write_never_rests_on_the_lists_tags(secretsmanager):
    """The list says a tag is missing: before a TagResource is decided from it, the secret is
    described (here the tag was added since, so there is nothing to write)."""
    create(secretsmanager, "s")
    stale = listed_now(secretsmanager, "s")
    secretsmanager.tag_resource(SecretId="s", Tags=[{"Key": "team", "Value": "a"}])
    client = reader_with_stale_list(stale)

    state = client.read_states(["s"], recheck=lambda s: s.tags.get("team") != "a")["s"]

    assert state.tags == {"team": "a"}
    assert client.calls == {"BatchGetSecretValue": 1, "DescribeSecret": 1}


def test_when_listsecrets_is_denied_every_secret_is_described(secretsmanager, monkeypatch):
    create(secretsmanager, "s")
    client = SecretsManager("us-east-1")

    def denied(**_):
        error = {"Error": {"Code": "AccessDeniedException", "Message": "no"}}
        raise botocore.exceptions.ClientError(error, "ListSecrets")

    monkeypatch.setattr(client.client, "list_secrets", denied)

    state = client.read_states(["s"])["s"]

    assert state.value["username"] == "u"
    assert client.calls == {"BatchGetSecretValue": 1, "DescribeSecret": 1}


def test_when_batchgetsecretvalue_is_denied_each_secret_is_read_by_itself(
    secretsmanager, monkeypatch
):
    """A policy written before BatchGetSecretValue existed (an SCP, a VPC endpoint policy)
    denies it: one GetSecretValue per secret answers the same, once the denial is known."""
    for name in ("s", "t"):
        create(secretsmanager, name, name)
    client = SecretsManager("us-east-1")

    def denied(**_):
        error = {"Error": {"Code": "AccessDeniedException", "Message": "no"}}
        raise botocore.exceptions.ClientError(error, "BatchGetSecretValue")

    monkeypatch.setattr(client.client, "batch_get_secret_value", denied)

    states = client.read_states(["s", "t", "never"])

    assert states["s"].value["username"] == "s" and states["t"].value["username"] == "t"
    assert not states["never"].exists
    # listed, and each read by itself: the reads check the list as the batch read would,
    # so only the secret missing from the list is described
    assert client.calls["ListSecrets"] == 1 and "BatchGetSecretValue" not in client.calls
    assert client.calls["GetSecretValue"] == 3 and client.calls["DescribeSecret"] == 1


def test_secrets_list_reads_false_describes_every_secret(secretsmanager, monkeypatch):
    create(secretsmanager, "s")
    client = SecretsManager("us-east-1", Settings.read({"SECRETS_LIST_READS": "false"}))

    assert client.read_states(["s"])["s"].value["username"] == "u"
    assert client.calls == {"BatchGetSecretValue": 1, "DescribeSecret": 1}


def test_name_prefixes_cover_every_name_tightly():
    bench = ["bench-owner"] + [f"bench-user{i:04}" for i in range(1, 500)]

    chains = name_prefix_chains(bench)

    assert chains == [
        ["bench-owner", "bench-user00"],
        ["bench-user01"],
        ["bench-user02"],
        ["bench-user03"],
        ["bench-user04"],
    ]
    mixed = ["a/x", "b/y", "b/yy", "c"] + [f"team{i}/db/u{j}" for i in range(3) for j in range(150)]
    chains = name_prefix_chains(mixed)
    prefixes = [p for chain in chains for p in chain]
    assert all(len(chain) <= 10 for chain in chains) and "" not in prefixes
    assert all(any(n.startswith(p) for p in prefixes) for n in mixed)
    # each filter matches at most a page of the names
    assert all(sum(any(n.startswith(p) for p in chain) for n in mixed) <= 100 for chain in chains)


@pytest.mark.parametrize(
    ("variable", "text", "pace"),
    [
        ("SECRETS_WRITES_PER_SECOND", None, 40.0),
        ("SECRETS_WRITES_PER_SECOND", "", 40.0),
        ("SECRETS_WRITES_PER_SECOND", " 25 ", 25.0),
        ("SECRETS_WRITES_PER_SECOND", "0.5", 0.5),
        ("SECRETS_READS_PER_SECOND", None, 80.0),
        ("SECRETS_READS_PER_SECOND", "1000", 1000.0),
    ],
)
def test_the_paces_of_writes_and_bulk_reads_are_configurable(variable, text, pace):
    environ = {} if text is None else {variable: text}
    assert calls_per_second(environ, variable) == (pace, None)
    settings = Settings.read(environ)
    assert (settings.secrets_writes_per_second, settings.secrets_reads_per_second) == (
        pace if variable == "SECRETS_WRITES_PER_SECOND" else 40.0,
        pace if variable == "SECRETS_READS_PER_SECOND" else 80.0,
    )


@pytest.mark.parametrize("variable", ["SECRETS_WRITES_PER_SECOND", "SECRETS_READS_PER_SECOND"])
@pytest.mark.parametrize("text", ["0", "-3", "fast", "100000"])
def test_a_pace_that_is_not_a_rate_is_refused(variable, text):
    settings = Settings.read({variable: text})
    assert settings.problems == (
        f"environment variable {variable} must be a number of calls per second, not {text!r}",
    )


def test_the_rate_limiter_lets_a_burst_through_then_spaces_the_calls(monkeypatch):
    clock = {"now": 1000.0}
    slept: list[float] = []
    monkeypatch.setattr("lambda_function.time.monotonic", lambda: clock["now"])
    monkeypatch.setattr("lambda_function.time.sleep", slept.append)
    limiter = RateLimiter(per_second=10, burst=3)

    for _ in range(5):
        limiter.wait()

    assert slept == pytest.approx([0.1, 0.2])  # three at once, then one every 0.1 s
