"""The documentation holds what it shows: every relative link in README.md, SECURITY.md,
docs/*.md and the Terraform module's README reaches a file (and a heading, for #anchors);
every example event in them passes the JSON Schema and the handler's own validation; every
example report has the keys a real report has; every measured figure says where it comes
from (a file a benchmark or test writes) or when it was measured; the README stays short."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest
from conftest import REPORT_KEYS, ROOT, USER_REPORT_KEYS, tool
from jsonschema import Draft202012Validator

DOCS = sorted(
    [
        ROOT / "README.md",
        ROOT / "SECURITY.md",
        ROOT / "deploy" / "terraform" / "README.md",
        *(ROOT / "docs").glob("*.md"),
    ]
)
SCHEMA = json.loads((ROOT / "lambda-invocation" / "event.schema.json").read_text())
README_MAX_BYTES = 12 * 1024

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# A figure that was measured: a number with a unit of time or size, and a word that says it
# was measured. Such a paragraph cites the file a benchmark or test writes, or is dated.
MEASURED = re.compile(r"\b(measured|took|ran in|peak(s|ed)? at)\b", re.IGNORECASE)
FIGURE = re.compile(r"\b\d[\d,.]*\s?(ms|s|seconds|minutes|MB|KB|kB)\b")
SOURCE = re.compile(r"RESULTS\.md|\b20\d\d-\d\d-\d\d\b")


def ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def prose(text: str) -> str:
    """The text without its fenced code blocks (a link or heading in code is not one)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, blanks to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for line in prose(path.read_text()).splitlines():
        heading = re.match(r"#{1,6} (.*)", line)
        if heading:
            base = slug(heading.group(1))
            name, n = base, 0
            while name in found:
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


@pytest.mark.parametrize("path", DOCS, ids=ids(DOCS))
def test_every_relative_link_resolves(path):
    broken = []
    for target in LINK.findall(prose(path.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    assert not broken, broken


def json_blocks(kind: str) -> list[tuple[str, dict]]:
    """(where, value) of every fenced JSON block in the docs that holds a whole `kind`."""
    found = []
    for path in DOCS:
        for n, block in enumerate(FENCE.finditer(path.read_text())):
            if block.group(1) != "json":
                continue
            try:
                value = json.loads(block.group(2))
            except ValueError:
                continue  # a fragment: "rotation": {...}, "sql": [...]
            if not isinstance(value, dict):
                continue
            is_event = "users" in value and ("secret_name" in value or "database_name" in value)
            is_report = "status" in value and "users" in value and not is_event
            if (kind == "event" and is_event) or (kind == "report" and is_report):
                found.append((f"{path.relative_to(ROOT)} block {n}", value))
    return found


EVENTS = json_blocks("event")
REPORTS = json_blocks("report")


def test_the_docs_show_events_and_reports():
    assert len(EVENTS) >= 3  # the README, docs/event.md, docs/CONTRACT.md
    assert len(REPORTS) >= 3  # the README, docs/report-and-errors.md, docs/CONTRACT.md


@pytest.mark.parametrize(("where", "event"), EVENTS, ids=[w for w, _ in EVENTS])
def test_each_example_event_passes_the_schema_and_the_handler(where, event):
    schema_errors = [e.message for e in Draft202012Validator(SCHEMA).iter_errors(event)]
    assert not schema_errors, schema_errors
    _, problems = tool.read_event(event)
    assert problems == []


@pytest.mark.parametrize(("where", "report"), REPORTS, ids=[w for w, _ in REPORTS])
def test_each_example_report_has_the_keys_of_a_real_report(where, report):
    assert set(report) - {"sql"} == REPORT_KEYS
    for user in report["users"]:
        assert set(user) == USER_REPORT_KEYS, user["db_user"]
        assert set(user["secret"]) >= {"name", "arn", "result"}


@pytest.mark.parametrize("path", DOCS, ids=ids(DOCS))
def test_measured_figures_say_where_they_come_from_or_when(path):
    undated = [
        paragraph.strip()[:120]
        for paragraph in re.split(r"\n\s*\n|\n(?=\s*[-|] )", prose(path.read_text()))
        if MEASURED.search(paragraph) and FIGURE.search(paragraph) and not SOURCE.search(paragraph)
    ]
    assert not undated, undated


def test_the_readme_is_short_and_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= README_MAX_BYTES
    linked = {target.partition("#")[0] for target in LINK.findall(readme)}
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    # Pages other branches add are linked by the lead when merged; every page here is linked.
    assert pages <= linked, pages - linked
