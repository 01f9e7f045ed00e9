"""The local stack (dev/stack.sh): up on free ports, every example of lambda-invocation/ run by
the documented command in the documented order, then down. One PostgreSQL major and MariaDB."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "lambda-invocation"

pytestmark = [pytest.mark.postgres, pytest.mark.mariadb]

# The order of the README's "Local stack" section: update and delete need the users that the
# seed creates; optional-keys runs after delete-user because it gives airflow-ro-dml grants in
# the schema reporting, which delete-user (schema public only) does not manage; iam-user adds
# an IAM reader of airflow-rw-ddl's tables.
# (file, what the report's users must show: db_user -> result)
ORDER = [
    ("seed-example.json", {"airflow-rw-ddl": "created", "airflow-ro-dml": "created"}),
    ("dry-run.json", {"airflow-rw-ddl": "unchanged", "airflow-ro-dml": "unchanged"}),
    ("create-users.json", {"airflow-rw-ddl": "unchanged", "airflow-rw-dml": "unchanged"}),
    ("update-password.json", {"airflow-rw-dml": "updated"}),
    ("rotation.json", {"airflow-rw-ddl": "updated", "airflow-ro-dml": "unchanged"}),
    ("delete-user.json", {"airflow-ro-dml": "deleted"}),
    ("optional-keys.json", {"airflow-ro-dml": "created", "airflow-legacy-etl": "deleted"}),
    ("iam-user.json", {"airflow-ro-iam": "created"}),
    ("mariadb-seed-example.json", {"airflow-rw-ddl": "created", "airflow-ro-dml": "created"}),
    ("mysql-users.json", {"orders_app": "created", "orders_legacy": "deleted"}),
]


def pg_major() -> str:
    majors = os.environ.get("PG_MAJORS", "16").split(",")
    return "16" if "16" in majors else majors[0]


def stack(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "dev" / "stack.sh"), *args],  # noqa: S607 - the documented command
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def alive(pid: int) -> bool:
    """Running, and not a zombie (whose command line is empty) left to a PID 1 that reaps none."""
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


@pytest.fixture
def stack_dir():
    """Not under pytest's basetemp: a pytest session that starts meanwhile (another checkout's)
    makes /tmp/pytest-of-<user> 0700 again, and the postgres user could no longer reach the
    stack's data directory, which must outlive this process's own checks."""
    path = Path(tempfile.mkdtemp(prefix="rds-stack-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# One param, so that the test's id names its servers as every test on a server does (and
# dev/needs.py fetches that major alone).
@pytest.mark.parametrize("major", [pg_major()], ids=lambda major: f"pg{major}-mariadb")
def test_every_example_runs_against_the_local_stack(stack_dir, major):
    examples = sorted(
        p.name for p in EXAMPLES.glob("*.json") if not p.name.endswith(".schema.json")
    )
    assert sorted(name for name, _ in ORDER) == examples
    env = dict(os.environ, STACK_DIR=str(stack_dir), LOG_LEVEL="WARNING")
    for name in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
        env.pop(name, None)  # the stack must set them itself
    up = stack("up", "--pg", major, "--mariadb", env=env)
    state_path = Path(env["STACK_DIR"]) / "state.json"
    try:
        assert up.returncode == 0, up.stderr
        assert "export AWS_ENDPOINT_URL=http://127.0.0.1:" in up.stdout
        status = stack("status", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"PostgreSQL {major}: up" in status.stdout
        assert "MariaDB: up" in status.stdout

        for name, expected in ORDER:
            run = stack("run", f"lambda-invocation/{name}", env=env)
            assert run.returncode == 0, f"{name}:\n{run.stdout}\n{run.stderr}"
            report = json.loads(run.stdout)
            assert report["status"] == ("dry_run" if name == "dry-run.json" else "success")
            results = {user["db_user"]: user["result"] for user in report["users"]}
            assert {user: results.get(user) for user in expected} == expected, name

        dry = stack("run", "lambda-invocation/seed-example.json", "--dry-run", env=env)
        assert dry.returncode == 0, dry.stderr
        assert json.loads(dry.stdout)["status"] == "dry_run"
        # Rotation again: nothing to do, as on AWS (moto would report it off, or in progress).
        again = stack("run", "lambda-invocation/rotation.json", env=env)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["changed"] is False
    finally:
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        down = stack("down", env=env)
    assert down.returncode == 0, down.stderr
    pids = [state["mariadb"]["pid"]] + [state[e]["moto"]["pid"] for e in ("postgres", "mariadb")]
    assert not [pid for pid in pids if alive(pid)]
    assert not Path(state["postgres"]["datadir"]).exists()
    assert stack("status", env=env).returncode == 3
