"""The documents a new user reads: a short README whose test command is the one
CI runs, and no commit hashes or run dates in README.md or docs/."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# A commit hash (7-40 hex digits with at least one letter and one digit) or an ISO date.
HISTORY = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b|\b20\d\d-\d\d-\d\d\b")


def test_the_readme_is_short_and_its_test_command_is_the_one_ci_runs():
    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(readme) <= 200
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    commands = [line for line in readme if line.startswith("python3 -m venv .venv")]
    assert len(commands) == 2 and "keras-uap run-all" in commands[0]
    assert commands[1] in ci


def test_no_commit_hash_or_run_date_in_the_readme_or_docs():
    found = {doc.name: HISTORY.findall(doc.read_text(encoding="utf-8")) for doc in DOCUMENTS}
    assert {name: hits for name, hits in found.items() if hits} == {}
    assert HISTORY.search("after e85f17f") and HISTORY.search("on 2026-11-26")
