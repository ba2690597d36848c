"""The hand-labelled learning set (benchmarks/data/learning_set.jsonl) is well formed and keeps its own rules.

Each line is one user message; messages of a dialog are replayed in order into one fresh store. The checks
here are about the labels only: nothing from memcli is imported.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parents[1] / "benchmarks/data/learning_set.jsonl"

FIELDS = {"id": str, "dialog": str, "at": str, "category": str, "text": str, "facts": list, "supersedes": list, "memory": str}
MINIMUMS = {
    "fact": 35,
    "preference": 20,
    "event": 20,
    "update": 12,
    "contradiction": 8,
    "question": 25,
    "chitchat": 25,
    "hostile": 15,
}
MEMORY = {"none", "recall", "either"}
NOTHING_TO_LEARN = {"question", "chitchat", "hostile"}


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    lines = DATA.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_size_and_ids(rows: list[dict[str, Any]]) -> None:
    assert len(rows) >= 150
    assert [r["id"] for r in rows] == [f"L{i:03d}" for i in range(1, len(rows) + 1)]


def test_fields_and_labels(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        assert set(r) == set(FIELDS), r["id"]
        for name, kind in FIELDS.items():
            assert isinstance(r[name], kind), (r["id"], name)
        assert r["text"].strip(), r["id"]
        assert r["category"] in MINIMUMS, r["id"]
        assert r["memory"] in MEMORY, r["id"]
    counts = Counter(r["category"] for r in rows)
    for category, least in MINIMUMS.items():
        assert counts[category] >= least, (category, counts[category])
    memory = Counter(r["memory"] for r in rows)
    assert memory["recall"] >= 20 and memory["none"] >= 20, memory


def test_times_increase_within_each_dialog(rows: list[dict[str, Any]]) -> None:
    last: dict[str, datetime] = {}
    for r in rows:
        at = datetime.fromisoformat(r["at"])
        if r["dialog"] in last:
            assert at > last[r["dialog"]], r["id"]
        last[r["dialog"]] = at


def test_facts_and_keys(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        if r["category"] in NOTHING_TO_LEARN:
            assert r["facts"] == [], r["id"]
        assert len(r["facts"]) <= 3, r["id"]
        for fact in r["facts"]:
            assert set(fact) == {"gold", "keys"}, r["id"]
            assert isinstance(fact["gold"], str) and fact["gold"].strip(), r["id"]
            assert isinstance(fact["keys"], list) and 1 <= len(fact["keys"]) <= 3, r["id"]
            for key in fact["keys"]:
                assert isinstance(key, str) and key.strip(), r["id"]
                assert key.lower() in r["text"].lower(), (r["id"], key)


def test_supersedes(rows: list[dict[str, Any]]) -> None:
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["category"] in {"update", "contradiction"}:
            assert r["supersedes"], r["id"]
        else:
            assert r["supersedes"] == [], r["id"]
        for s in r["supersedes"]:
            assert set(s) == {"id", "fact"}, r["id"]
            earlier = seen.get(s["id"])
            assert earlier is not None and earlier["dialog"] == r["dialog"], (r["id"], s)
            assert isinstance(s["fact"], int) and 0 <= s["fact"] < len(earlier["facts"]), (r["id"], s)
        seen[r["id"]] = r
