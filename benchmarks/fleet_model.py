"""A model of a fleet's first run, to compare ways of sharing the fleet's pace (docs/fleets.md).

    .venv/bin/python benchmarks/fleet_model.py [--own 0.5,2] [--jobs 1,4,8] [--pace 50]

No server and no AWS: deploy/invoke.py's own Schedule orders the events and gives the shares,
and each invocation is modelled as `own` seconds of its own work (connecting, reading the
state, the SQL) plus its writes at its share: one CreateSecret per user, the first at once,
the others 1/share apart. The time is when the last invocation ends; the floor is the writes
divided by the pace. It is set against equal shares (every cluster weighs the same:
W / min(jobs, clusters not yet finished), invoke.sh's rule before weights), over fleets of
fixed shapes and of random sizes (seeded)."""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))

import invoke  # noqa: E402 - deploy/ is not a package

PACE = "secrets_writes_per_second"


class EqualShares(invoke.Schedule):
    def __init__(self, events, jobs, paces):
        super().__init__(events, jobs, paces)
        self.weights = dict.fromkeys(self.weights, 1)


def fleets() -> dict[str, list[list[int]]]:
    """Fleet shapes: for each cluster, the users of each of its databases."""
    draw = random.Random(1)  # noqa: S311 - seeded sizes, not secrets
    return {
        "20 x 100 on 8 servers (4 of 3, 4 of 2)": [[100] * 3] * 4 + [[100] * 2] * 4,
        "20 x 100 on 20 servers": [[100]] * 20,
        "20 of 10-200 users on 20 servers": [[draw.randint(10, 200)] for _ in range(20)],
        "40 of 10-200 users on 10 servers": [
            [draw.randint(10, 200) for _ in range(4)] for _ in range(10)
        ],
        "30 of 5-300 users on 30 servers": [[draw.randint(5, 300)] for _ in range(30)],
        "30 of lognormal sizes on 30 servers": [
            [int(draw.lognormvariate(4, 1)) + 1] for _ in range(30)
        ],
        "6 of 10-200 users on 3 servers": [
            [draw.randint(10, 200) for _ in range(2)] for _ in range(3)
        ],
        "1 x 1000 and 10 x 10, one a server": [[1000]] + [[10]] * 10,
        "1 x 500 and 20 x 50, one a server": [[500]] + [[50]] * 20,
        "10 x 100 on 1 server, 10 x 100 on 10": [[100] * 10] + [[100]] * 10,
    }


def makespan(schedule_type: type, clusters: list[list[int]], jobs: int, own: float, pace: float):
    events = [
        (f"c{c}-{n}.json", {"rds_host": f"c{c}", "users": [{}] * users})
        for c, queue in enumerate(clusters)
        for n, users in enumerate(queue)
    ]
    schedule = schedule_type(events, jobs, {PACE: pace})
    running: dict = {}  # cluster -> when its invocation ends
    now = 0.0
    while True:
        for cluster, _, _, event in schedule.starts():
            writes, share = len(event["users"]), event[PACE]
            running[cluster] = now + own + max(writes - 1, 0) / share
        if not running:
            return now
        cluster, now = min(running.items(), key=lambda item: item[1])
        del running[cluster]
        schedule.finished(cluster)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--own", default="0.5,2", help="seconds of own work an invocation")
    parser.add_argument("--jobs", default="1,4,8", help="invoke.sh -j values")
    parser.add_argument("--pace", type=float, default=50, help="the fleet's writes a second")
    args = parser.parse_args()
    owns = [float(o) for o in args.own.split(",")]
    jobs = [int(j) for j in args.jobs.split(",")]
    print("| fleet | -j | own work | floor | equal shares | weighted | change |")
    print("|---|---|---|---|---|---|---|")
    changes = []
    for name, clusters in fleets().items():
        floor = sum(map(sum, clusters)) / args.pace
        for j in jobs:
            for own in owns:
                equal = makespan(EqualShares, clusters, j, own, args.pace)
                weighted = makespan(invoke.Schedule, clusters, j, own, args.pace)
                change = weighted / equal - 1
                changes.append(change)
                print(
                    f"| {name} | {j} | {own:g} s | {floor:.1f} s | {equal:.1f} s "
                    f"({equal / floor:.2f}x) | {weighted:.1f} s ({weighted / floor:.2f}x) | "
                    f"{change:+.0%} |"
                )
    print(
        f"\nweighted against equal shares: from {min(changes):+.0%} to {max(changes):+.0%} "
        f"over {len(changes)} cases"
    )


if __name__ == "__main__":
    main()
