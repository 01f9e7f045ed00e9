"""A pytest plugin for dev/needs.py and tests/test_filters.py: with `-p dev.collection_report` and
COLLECTION_REPORT=FILE, the session writes to FILE, as JSON, each selected test's id, marks
and fixtures (those it uses, directly or through other fixtures)."""

from __future__ import annotations

import json
import os

import pytest


def pytest_collection_finish(session: pytest.Session) -> None:
    path = os.environ.get("COLLECTION_REPORT")
    if not path:
        return
    tests = [
        {
            "id": item.nodeid,
            "marks": sorted({mark.name for mark in item.iter_markers()}),
            "fixtures": sorted(getattr(item, "fixturenames", ())),
        }
        for item in session.items
    ]
    with open(path, "w", encoding="utf-8") as file:
        json.dump(tests, file)
