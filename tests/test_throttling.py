"""Secrets Manager's quotas: a fleet's shared pace, and throttling survived. The tool's calls go
through a proxy in front of moto (dev/quota_proxy.py) that answers ThrottlingException as
AWS does above a quota: botocore's standard retry mode retries them with backoff and jitter; a
run whose retries run out fails saying it was throttled, and no password is lost at any
throttled call. invoke.sh gives each invocation of a fleet its share of the paces. What does
not depend on the engine runs on PostgreSQL and on MariaDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from types import SimpleNamespace

import botocore.exceptions
import invoke
import pytest
from conftest import ROOT, tool, user
from hypothesis import given, settings
from hypothesis import strategies as st

from dev.quota_proxy import EveryNth, From, QuotaProxy, Quotas

INVOKE = ROOT / "deploy" / "invoke.sh"


@pytest.fixture
def proxy(moto_url, monkeypatch):
    """The throttling proxy, the tool's endpoint for this test; it throttles nothing until a
    test gives it a rule."""
    with QuotaProxy(moto_url) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running.url)
        yield running


def users(count: int, action: str = "create") -> list[dict]:
    """Users who may read the database's tables (on MariaDB a user without a privilege in the
    database cannot log in to it)."""
    return [
        user(f"app{i}", f"app{i}-secret", action=action, grant_privileges="SELECT")
        for i in range(count)
    ]


def logs_in(db, secret: str, stage: str = "AWSCURRENT") -> bool:
    value = db.secret(secret, stage)
    try:
        connection = db.open_connection(
            value["host"], value["port"], value["username"], value["password"], value["dbname"]
        )
    except Exception:  # noqa: BLE001 - any refusal means: this password does not log in
        return False
    connection.close()
    return True


def no_password_is_lost(db, secrets: list[str]) -> None:
    """Each user's working password is in its secret: AWSCURRENT, or (a change the next run
    finishes) AWSPENDING."""
    for secret in secrets:
        pending = any("AWSPENDING" in s for s in db.versions(secret).values())
        assert logs_in(db, secret) or (pending and logs_in(db, secret, "AWSPENDING")), secret


def test_every_third_write_throttled_the_run_converges(db, proxy, monkeypatch):
    proxy.rule = EveryNth(3)
    secrets = [u["user_secret_name"] for u in users(6)]

    first = db.invoke(db.event(users(6)))
    again = db.invoke(db.event(users(6, action="update")))  # stage, promote: 3 writes a user
    finished = db.invoke(db.event(users(6)))

    assert first["status"] == again["status"] == "success"
    assert {u["result"] for u in first["users"]} == {"created"}
    assert {u["result"] for u in again["users"]} == {"updated"}
    assert finished["changed"] is False
    throttled = first["stats"]["aws_throttled"], again["stats"]["aws_throttled"]
    assert throttled[0]["CreateSecret"] >= 2  # the 3rd and the 6th of at least 6 writes
    assert {"PutSecretValue", "UpdateSecretVersionStage"} <= set(throttled[1])
    assert proxy.throttled == Counter(throttled[0]) + Counter(throttled[1])  # as the tool saw
    assert all(logs_in(db, secret) for secret in secrets)


def test_throttled_at_every_write_the_run_fails_saying_so_and_keeps_every_password(
    db, proxy, monkeypatch
):
    db.invoke(db.event(users(3)))
    newcomer = user("newcomer", "newcomer-secret", grant_privileges="SELECT")
    event = db.event([*users(3, action="update"), newcomer])
    monkeypatch.setattr(tool.SecretsManager, "ATTEMPTS", 2)  # one retry: a short test
    proxy.rule = From(0)

    with pytest.raises(tool.ApplyError) as failed:
        db.invoke(event)

    message = str(failed.value)
    assert message.startswith("throttled: Secrets Manager answered ThrottlingException")
    assert "2 time(s)" in message and "a re-run converges" in message
    assert proxy.throttled == {"CreateSecret": 2, "PutSecretValue": 6}  # each call tried twice
    assert all(logs_in(db, f"app{i}-secret") for i in range(3))
    assert "newcomer" not in db.user_names()

    proxy.rule = From(10**9)  # the quota is free again: the same event converges
    db.invoke(event)
    assert all(logs_in(db, s) for s in ["newcomer-secret", *(f"app{i}-secret" for i in range(3))])


def test_no_password_is_lost_whichever_write_is_throttled(db, proxy, monkeypatch):
    """An update of three users writes 9 times (stage, promote, drop the pending label): the
    run is throttled from its kth write on, for every k, with no retry at all; each time every
    working password is in its secret, and the next run converges."""
    secrets = [u["user_secret_name"] for u in users(3)]
    db.invoke(db.event(users(3)))
    monkeypatch.setattr(tool.SecretsManager, "ATTEMPTS", 1)
    for passed in range(10):
        proxy.rule = From(passed)
        try:
            db.invoke(db.event(users(3, action="update")))
        except tool.ApplyError as error:
            assert str(error).startswith("throttled:") and "re-run converges" in str(error)
        else:
            assert passed == 9  # every write went through
        no_password_is_lost(db, secrets)
        proxy.rule = From(10**9)
        db.invoke(db.event(users(3)))
        assert all(logs_in(db, secret) for secret in secrets), passed


def test_throttled_with_http_429_the_run_converges_too(db, proxy, monkeypatch):
    proxy.rule, proxy.status = EveryNth(2), 429

    report = db.invoke(db.event(users(4)))

    assert report["stats"]["aws_throttled"]["CreateSecret"] >= 2
    assert all(logs_in(db, f"app{i}-secret") for i in range(4))


def test_a_throttled_call_is_not_retried_past_the_invocations_time(db, proxy, monkeypatch):
    proxy.rule = From(0)
    # 40 s left, 30 s once the margin is kept: less than the first retry may take (1 s of
    # backoff at most, then the attempt's 5 s to connect and 30 s to read).
    context = SimpleNamespace(aws_request_id="late", get_remaining_time_in_millis=lambda: 40_000)
    started = time.monotonic()

    with pytest.raises(tool.ApplyError, match=r"^throttled: .*remaining time \(30 s\)"):
        tool.lambda_handler(db.event(users(4)), context)

    assert time.monotonic() - started < 10
    assert proxy.throttled["CreateSecret"] == proxy.calls["CreateSecret"] <= 4  # no retry
    assert not ({"app0", "app1", "app2", "app3"} & db.user_names())


def test_the_events_pace_is_the_invocations_pace(db, proxy, monkeypatch):
    monkeypatch.setenv("SECRETS_WRITES_PER_SECOND", "1000")
    started = time.monotonic()

    report = db.invoke(db.event(users(6), secrets_writes_per_second=5))

    assert time.monotonic() - started >= 1.0  # 6 writes at 5 a second: 5 intervals of 0.2 s
    assert report["stats"]["secrets_paces"]["writes_per_second"] == 5.0
    assert db.invoke(db.event(users(1)))["stats"]["secrets_paces"]["writes_per_second"] == 1000


def test_writes_that_cannot_fit_the_time_left_at_their_pace_are_not_started(db, proxy, monkeypatch):
    # 6 new users at 1 write every 200 s: 1,000 s, against 600 s less the 10 s margin.
    event = db.event(users(6), secrets_writes_per_second=0.005)

    with pytest.raises(tool.ApplyError, match=r"6 secret writes at 0.005 a second take at least "):
        db.invoke(event)

    assert proxy.calls["CreateSecret"] == 0
    assert not ({f"app{i}" for i in range(6)} & db.user_names())


def test_within_aws_quotas_nothing_is_throttled(db, proxy, monkeypatch):
    """The default paces (40 writes, 80 bulk reads a second) stay under AWS's quotas."""
    proxy.rule = Quotas()
    monkeypatch.delenv("SECRETS_WRITES_PER_SECOND", raising=False)
    monkeypatch.delenv("SECRETS_READS_PER_SECOND", raising=False)

    db.invoke(db.event(users(60)))
    db.invoke(db.event(users(60)))

    assert proxy.throttled == {}
    assert proxy.calls["CreateSecret"] == 60


# The pure parts: the event keys, the message, the proxy's quotas, invoke.sh's shares.


@pytest.mark.parametrize("pace", [0.5, 6.25, 10_000])
def test_a_pace_in_the_event_is_read_as_the_variable_is(pace):
    event = tool.parse_event(
        {"secret_name": "m", "database_name": "d", "users": [user("a")]}
        | {"secrets_writes_per_second": pace, "secrets_reads_per_second": pace}
    )
    assert event.secrets_writes_per_second == event.secrets_reads_per_second == pace


@pytest.mark.parametrize("pace", [0, -1, 10_001, "5", True, float("nan"), float("inf")])
def test_a_bad_pace_in_the_event_is_refused_naming_the_key(pace):
    with pytest.raises(tool.InvalidEvent, match="secrets_writes_per_second must be a number"):
        tool.parse_event(
            {"secret_name": "m", "database_name": "d", "users": [user("a")]}
            | {"secrets_writes_per_second": pace}
        )


def test_retries_out_say_throttled_how_often_and_that_a_rerun_converges():
    error = botocore.exceptions.ClientError(
        {
            "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
            "ResponseMetadata": {"RetryAttempts": 7},
        },
        "PutSecretValue",
    )
    message = tool.unexpected_error_message(error)
    assert message.startswith(
        "throttled: Secrets Manager answered ThrottlingException to PutSecretValue 8 time(s)"
    )
    assert "secrets_writes_per_second" in message and message.endswith("a re-run converges.")
    other = botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied"}}, "PutSecretValue")
    assert tool.throttled_text(other) is None


def test_the_proxy_quotas_allow_a_seconds_worth_then_the_rate():
    quotas = Quotas(scale=0.2)  # 10 writes a second for each group of writes
    burst = [quotas("CreateSecret") for _ in range(12)]
    assert burst.count(False) == 10 and burst[-2:] == [True, True]
    assert not quotas("PutSecretValue")  # another group: its own bucket
    time.sleep(0.25)
    assert [quotas("CreateSecret") for _ in range(3)].count(False) == 2


class Recorder:
    """Stands in for one `aws lambda invoke`: records when it ran and the paces it was given."""

    def __init__(self, seconds: float):
        self.seconds, self.runs = seconds, []
        self._lock = threading.Lock()

    def __call__(self, index, path, event):
        started = time.monotonic()
        time.sleep(self.seconds)
        with self._lock:
            self.runs.append((started, time.monotonic(), event))
        return {"ok": True, "file": str(path)}


def fleet_events(clusters: dict[str, int]) -> list[tuple[str, dict]]:
    """Events for `clusters` (host -> databases on it), in the order of a folder listing."""
    return [
        (f"{host}-{n}.json", {"rds_host": host, "database_name": f"db{n}", "users": [{}] * 10})
        for host, count in clusters.items()
        for n in range(count)
    ]


def test_the_fleets_pace_is_shared_and_never_exceeded():
    record = Recorder(0.05)
    events = fleet_events({"a": 4, "b": 1, "c": 1, "d": 2})

    outcomes = invoke.run_fleet(events, jobs=3, writes=30, reads=60, invoke_one=record)

    assert [o["file"] for o in outcomes] == [path for path, _ in events]  # in the given order
    runs = record.runs
    for at in [start + 0.001 for start, _, _ in runs]:
        running = [e for s, end, e in runs if s <= at < end]
        assert len(running) <= 3
        assert sum(e["secrets_writes_per_second"] for e in running) <= 30 + 1e-9
        assert sum(e["secrets_reads_per_second"] for e in running) <= 60 + 1e-9
        hosts = [e["rds_host"] for e in running]
        assert len(hosts) == len(set(hosts))  # one invocation per cluster at a time
    first = sorted(runs, key=lambda r: r[0])[:3]
    # 4 clusters take turns 3 at a time: none weighs more than twice the mean, equal shares
    assert [e["secrets_writes_per_second"] for _, _, e in first] == [10, 10, 10]
    last = max(runs, key=lambda r: r[0])[2]
    assert last["rds_host"] == "a" and last["secrets_writes_per_second"] == 30  # alone


def test_when_every_cluster_runs_at_once_their_shares_follow_their_users():
    """The fleet of benchmarks/bench_fleet.py: 20 databases of 100 users on 8 servers. Equal
    shares would give the third database of a server 50/8 a second, fixed while the others'
    second ones still ran."""
    events = [
        (f"{host}-{n}.json", {"rds_host": host, "users": [{}] * 100})
        for host, count in zip("abcdefgh", [3, 3, 3, 3, 2, 2, 2, 2], strict=True)
        for n in range(count)
    ]
    schedule = invoke.Schedule(events, 8, {"secrets_writes_per_second": 50})

    shares = {e["rds_host"]: e["secrets_writes_per_second"] for *_, e in schedule.starts()}

    assert shares == {**dict.fromkeys("abcd", 7.5), **dict.fromkeys("efgh", 5)}
    schedule.finished(("host", "a", ""))
    ((_, _, _, second),) = schedule.starts()
    assert second["secrets_writes_per_second"] == 7.5  # 300 of the 2,000 users still to run


def test_a_cluster_far_above_the_mean_is_not_left_alone_on_a_small_share():
    events = [("big.json", {"rds_host": "big", "users": [{}] * 1000})] + [
        (f"s{n}.json", {"rds_host": f"s{n}", "users": [{}] * 10}) for n in range(10)
    ]

    started = invoke.Schedule(events, 4, {"secrets_writes_per_second": 50}).starts()

    shares = {e["rds_host"]: e["secrets_writes_per_second"] for *_, e in started}
    # the 3 others weigh twice the mean (2 x 100)
    assert shares["big"] == pytest.approx(50 * 1000 / 1600)
    assert sum(shares.values()) == pytest.approx(50)


@settings(max_examples=300, deadline=None)
@given(
    clusters=st.lists(
        st.lists(st.integers(0, 300), min_size=1, max_size=4), min_size=1, max_size=12
    ),
    jobs=st.integers(1, 10),
    durations=st.lists(st.floats(0.1, 100), min_size=48, max_size=48),
)
def test_the_shares_of_the_invocations_running_never_add_up_to_more_than_the_pace(
    clusters, jobs, durations
):
    """Played out with invocations of any length, finishing in any order."""
    events = [
        (f"c{c}-{n}.json", {"rds_host": f"c{c}", "users": [{}] * users})
        for c, queue in enumerate(clusters)
        for n, users in enumerate(queue)
    ]
    schedule = invoke.Schedule(events, jobs, {"secrets_writes_per_second": 50})
    running, now, started = {}, 0.0, []
    while True:
        for cluster, index, _, event in schedule.starts():
            running[cluster] = (now + durations[index % len(durations)], event)
            started.append(index)
            shares = [e["secrets_writes_per_second"] for _, e in running.values()]
            assert len(running) <= jobs
            assert sum(shares) <= 50 + 1e-9
            assert min(shares) > 0
        if not running:
            break
        cluster, (now, _) = min(running.items(), key=lambda item: item[1][0])
        del running[cluster]
        schedule.finished(cluster)
    assert sorted(started) == list(range(len(events)))


def test_an_events_own_lower_pace_is_kept():
    record = Recorder(0)
    events = [("x.json", {"rds_host": "x", "secrets_writes_per_second": 2, "users": []})]
    invoke.run_fleet(events, jobs=4, writes=40, reads=80, invoke_one=record)
    assert record.runs[0][2]["secrets_writes_per_second"] == 2
    assert record.runs[0][2]["secrets_reads_per_second"] == 80


RECORDING_AWS = """#!{python}
# Stand-in for `aws lambda invoke` (and the credentials check before it): keeps the
# payload, answers a report.
import json, os, sys, uuid
if sys.argv[1:3] == ["sts", "get-caller-identity"]:
    print(json.dumps({{"Account": "123456789012"}}))
    sys.exit(0)
payload = next(a for a in sys.argv if a.startswith("fileb://"))[len("fileb://"):]
event = json.load(open(payload))
json.dump(event, open(os.path.join(os.environ["RECORD"], uuid.uuid4().hex + ".json"), "w"))
json.dump({{"status": "success", "changed": False, "users": []}}, open(sys.argv[-1], "w"))
print(json.dumps({{"StatusCode": 200}}))
"""


def test_invoke_sh_puts_each_events_share_in_its_payload(tmp_path):
    bin_dir, record, events = tmp_path / "bin", tmp_path / "record", tmp_path / "events"
    for folder in (bin_dir, record, events):
        folder.mkdir()
    (bin_dir / "aws").write_text(RECORDING_AWS.format(python=sys.executable))
    (bin_dir / "aws").chmod(0o755)
    for host in ("db1.example.com", "db2.example.com", "db3.example.com"):
        event = {"secret_name": "m", "database_name": "d", "rds_host": host, "users": []}
        (events / f"{host}.json").write_text(json.dumps(event))
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RECORD": str(record),
        "AWS_REGION": "us-east-1",
    }
    command = [str(INVOKE), "-j", "2", "--secrets-writes-per-second", "30", "f", str(events)]

    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 cluster(s), apply, 2 at a time" in done.stdout
    paces = sorted(
        (e["secrets_writes_per_second"], e["secrets_reads_per_second"])
        for e in (json.loads(p.read_text()) for p in record.glob("*.json"))
    )
    assert paces[:2] == [(15.0, 40.0), (15.0, 40.0)]  # 2 at a time of 30 and 80 a second
    assert paces[2] in ((15.0, 40.0), (30.0, 80.0))  # the last alone, if the others are done


@pytest.mark.parametrize("pace", ["0", "-5", "nan", "10001"])
def test_invoke_sh_refuses_a_pace_out_of_range_and_invokes_nothing(tmp_path, pace):
    event = tmp_path / "e.json"
    event.write_text(json.dumps({"secret_name": "m", "database_name": "d", "users": []}))
    command = [str(INVOKE), "--secrets-writes-per-second", pace, "f", str(event)]

    done = subprocess.run(command, capture_output=True, text=True, check=False)

    assert done.returncode == 2 and "--secrets-writes-per-second needs a number" in done.stderr
