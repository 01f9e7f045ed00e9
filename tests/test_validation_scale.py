"""Validation is linear in the number of users, grantor chains and cycles included: pinned by
counting the work (lookups of a user by name), never by timing."""

from __future__ import annotations

import pytest
from conftest import tool
from lambda_function import InvalidEvent, parse_event

N = 5000


def event_of(users: list[dict]) -> dict:
    return {
        "secret_name": "master",
        "database_name": "app",
        "db_engine": "postgres",
        "users": users,
    }


def chain(n: int) -> list[dict]:
    """u0 <- u1 <- ... : each user's grantor is the one before it."""
    return [
        {"db_user": f"u{i}", "user_secret_name": f"s{i}", "grantor": f"u{i - 1}" if i else None}
        for i in range(n)
    ]


@pytest.fixture
def lookups(monkeypatch) -> list[str]:
    """Every Event.user lookup validation makes, recorded."""
    calls: list[str] = []
    original = tool.Event.user

    def counting(self, name):
        calls.append(name)
        return original(self, name)

    monkeypatch.setattr(tool.Event, "user", counting)
    return calls


def test_a_5000_user_chain_declared_grantees_first_validates_with_linear_lookups(lookups):
    users = list(reversed(chain(N)))  # the worst order: every walk would go to the chain's end
    event = parse_event(event_of(users))
    assert len(event.users) == N
    assert len(lookups) <= 3 * N


def test_a_5000_user_cycle_is_found_once_with_linear_lookups(lookups):
    users = chain(N)
    users[0]["grantor"] = f"u{N - 1}"
    with pytest.raises(InvalidEvent) as caught:
        parse_event(event_of(users))
    cycles = [p for p in caught.value.problems if p.startswith("grantor cycle")]
    assert len(cycles) == 1
    assert cycles[0].count(" -> ") == N
    assert len(lookups) <= 3 * N


def test_many_small_cycles_and_chains_leading_into_them_are_each_reported_once(lookups):
    users = []
    for k in range(N // 5):  # a 2-cycle, and a chain of 3 ending in it
        a, b, c, d, e = (f"c{k}-{x}" for x in "abcde")
        users += [
            {"db_user": a, "user_secret_name": a, "grantor": b},
            {"db_user": b, "user_secret_name": b, "grantor": a},
            {"db_user": c, "user_secret_name": c, "grantor": a},
            {"db_user": d, "user_secret_name": d, "grantor": c},
            {"db_user": e, "user_secret_name": e, "grantor": d},
        ]
    with pytest.raises(InvalidEvent) as caught:
        parse_event(event_of(list(reversed(users))))
    cycles = sorted(p for p in caught.value.problems if p.startswith("grantor cycle"))
    assert len(cycles) == N // 5
    assert "grantor cycle: c0-a -> c0-b -> c0-a" in cycles
    assert len(lookups) <= 3 * N


def test_grantor_order_of_a_5000_user_chain_needs_no_deep_recursion():
    users = list(reversed(chain(N)))
    event = parse_event(event_of(users))
    ordered = [u.name for u in tool.grantor_order(event.users)]
    assert ordered == [f"u{i}" for i in range(N)]
    assert [u.name for u in reversed(tool.grantor_order(event.users))][:2] == [
        f"u{N - 1}",
        f"u{N - 2}",
    ]


def test_a_user_declared_twice_is_still_reported_and_the_first_one_is_looked_up():
    users = [
        {"db_user": "a", "user_secret_name": "s1"},
        {"db_user": "a", "user_secret_name": "s2", "action": "delete"},
        {"db_user": "b", "user_secret_name": "s3", "grantor": "a"},
    ]
    with pytest.raises(InvalidEvent) as caught:
        parse_event(event_of(users))
    assert caught.value.problems == ["user 'a' is declared more than once"]
