"""Draws bench_fleet.py's figures (its JSON) as a PNG: the time of a first run and of a no-op
against the parallel invocations (-j) and against the users a database, next to the floors
Secrets Manager's quotas set. Runs in the venv that has matplotlib (benchmarks/.venv, from
benchmarks/requirements-plot.txt), not in the project's:

    benchmarks/.venv/bin/python benchmarks/plot_fleet.py FIGURES.json PLOT.png"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend


def series(results: list[dict], key: str, fixed: str) -> list[dict]:
    """The results that vary `key` with `fixed` at its largest value, in order of `key`."""
    largest = max(r[fixed] for r in results)
    return sorted((r for r in results if r[fixed] == largest), key=lambda r: r[key])


def panel(axes, results: list[dict], key: str, label: str) -> None:
    xs = [r[key] for r in results]
    for run, colour in (("first run", "tab:blue"), ("no-op", "tab:green")):
        axes.plot(xs, [r[run]["seconds"] for r in results], "o-", color=colour, label=run)
        axes.plot(
            xs,
            [r[run]["floor"] for r in results],
            "--",
            color=colour,
            alpha=0.6,
            label=f"{run}: quota floor",
        )
    first = [r["first run"] for r in results]
    axes.plot(
        xs, [1.3 * r["floor"] for r in first], ":", color="tab:red", label="first run: 1.3x floor"
    )
    for x, r in zip(xs, first, strict=True):
        throttled = sum(r["throttled"].values())
        axes.annotate(
            f"{throttled} throttled, {r['failures']} failed",
            (x, r["seconds"]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=7,
        )
    axes.set_xlabel(label)
    axes.set_ylabel("seconds (invoke.sh, whole fleet)")
    axes.set_xticks(xs)
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)


def main(source: str, target: str) -> None:
    results = json.loads(Path(source).read_text())
    databases = results[0]["databases"]
    by_jobs = series(results, "jobs", "users")
    by_users = series(results, "users", "jobs")
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    panel(left, by_jobs, "jobs", "parallel invocations (invoke.sh -j)")
    left.set_title(f"{databases} databases x {by_jobs[0]['users']} users")
    panel(right, by_users, "users", "users a database")
    right.set_title(f"{databases} databases, -j {by_users[0]['jobs']}")
    figure.suptitle("A fleet against Secrets Manager's quotas (writes 50/s, bulk reads 100/s)")
    figure.tight_layout()
    figure.savefig(target, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:3])
