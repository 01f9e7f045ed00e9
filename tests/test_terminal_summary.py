"""Section 1's command line at a terminal: after the JSON report, a short table (user, result,
changes) on standard error, for the person reading it. A pipe or a file gets the JSON alone,
unchanged. The table is `summary_table` (section 8), a pure function of the report."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import tempfile

from conftest import HANDLER, tool

REPORT = {
    "status": "success",
    "dry_run": False,
    "changed": True,
    "engine": "postgres",
    "host": "127.0.0.1",
    "database": "airflow",
    "users": [
        {
            "db_user": "airflow-rw-ddl",
            "result": "created",
            "changes": ["create role", "grant CONNECT on database airflow", "secret created"],
        },
        {"db_user": "airflow-ro-dml", "result": "unchanged", "changes": []},
        {
            "db_user": "airflow-rw-dml",
            "result": "updated",
            "changes": [f"grant SELECT on table public.t{n}" for n in range(20)],
        },
    ],
    "warnings": ["PUBLIC holds CREATE on schema public"],
}


def test_the_table_has_a_line_per_user_with_its_result_and_changes():
    lines = tool.summary_table(REPORT).splitlines()

    assert lines[0] == "airflow on 127.0.0.1 (postgres): changed"
    assert lines[1].split() == ["user", "result", "changes"]
    ddl, ro, dml = lines[2:5]
    assert ddl.split()[:3] == ["airflow-rw-ddl", "created", "3:"]
    assert "create role; grant CONNECT on database airflow; secret created" in ddl
    assert ro.split() == ["airflow-ro-dml", "unchanged", "-"]
    # Columns line up, and a long list of changes is cut, not wrapped.
    assert ddl.index("created") == ro.index("unchanged") == dml.index("updated")
    assert dml.endswith("...") and len(dml) < 120 and dml.split()[2] == "20:"
    assert lines[5] == '  1 warning(s): see "warnings" in the report'


def test_a_dry_run_and_a_no_op_say_so():
    dry = tool.summary_table({**REPORT, "dry_run": True, "warnings": []}).splitlines()
    assert dry[0].endswith("dry run, nothing was changed; a run would do this")
    same = tool.summary_table({**REPORT, "changed": False, "warnings": []}).splitlines()
    assert same[0].endswith(": nothing to change") and len(same) == 5


def run_handler(event: dict, *, terminal: bool) -> tuple[int, str, str]:
    """The command line with standard output on a pseudo-terminal (or a pipe); returns the
    exit status, standard output and standard error."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(event, file)
    try:
        if not terminal:
            done = subprocess.run(  # noqa: S603
                [sys.executable, str(HANDLER), file.name],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            return done.returncode, done.stdout, done.stderr
        controller, terminal_end = pty.openpty()
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, str(HANDLER), file.name],
            stdout=terminal_end,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(terminal_end)
        output = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the other end closed: Linux answers EIO
                break
            if not chunk:
                break
            output += chunk
        os.close(controller)
        _, errors = process.communicate(timeout=300)
        return process.returncode, output.decode().replace("\r\n", "\n"), errors
    finally:
        os.unlink(file.name)


def test_a_terminal_gets_the_table_after_the_report_and_a_pipe_the_json_alone(rds):
    status, out, err = run_handler(rds.seed_event(), terminal=True)

    assert status == 0, err
    report = json.loads(out)
    assert report["changed"] is True
    table = err[err.index("airflow on ") :].splitlines()
    assert table[0] == f"airflow on {rds.server.host} (postgres): changed"
    assert [line.split()[:2] for line in table[2:5]] == [
        ["airflow-rw-ddl", "created"],
        ["airflow-rw-dml", "created"],
        ["airflow-ro-dml", "created"],
    ]

    status, out, err = run_handler(rds.seed_event(), terminal=False)

    assert status == 0, err
    assert json.loads(out)["changed"] is False  # the JSON alone, and valid
    assert "airflow on " not in err and "user  " not in err
