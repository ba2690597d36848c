"""Upgrades lose nothing (issue 16, item 5): a store and an export written by an older memcli
(committed fixtures, made by tests/fixtures/make_old_store.py) open in this one, are upgraded in
place, pass doctor and give the same answers."""

from __future__ import annotations

import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from memcli.api import Memcli
from memcli.paths import ensure_private_dir
from memcli.store.schema import SCHEMA_VERSION

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GENERATIONS = sorted(p.name.removesuffix(".tar.gz") for p in FIXTURES.glob("store-*.tar.gz"))


def _expect(gen: str) -> dict:  # type: ignore[type-arg]
    return json.loads((FIXTURES / f"{gen}.expect.json").read_text(encoding="utf-8"))


def _check_answers(mem: Memcli, expect: dict) -> None:  # type: ignore[type-arg]
    ids = expect["ids"]
    for key, query in expect["queries"].items():
        assert mem.recall(query, k=3, touch=False).hits[0].memory.id == expect["answers"][key], key
    stats = mem.stats()
    assert sum(stats.spaces.values()) == expect["active"] and stats.trashed == expect["trashed"]
    # History survives: the superseded fact is kept, closed, pointing at its successor; the link too.
    paris = mem.show(ids["paris"])
    assert not paris.current and paris.superseded_by == ids["lyon"]
    assert paris.valid_until == datetime(2026, 6, 1, tzinfo=UTC)
    assert any(link.other == ids["flight"] for link in mem.history(ids["vet"]).links)
    assert ids["bike"] in {m.id for m in mem.list(trash=True).memories}


def test_there_is_a_committed_generation() -> None:
    assert GENERATIONS, "tests/fixtures/store-*.tar.gz is missing"


@pytest.mark.embedded_only
@pytest.mark.parametrize("gen", GENERATIONS)
def test_an_old_store_opens_upgrades_and_answers_the_same(gen: str, home: Path) -> None:
    data = ensure_private_dir(home / "data")
    with tarfile.open(FIXTURES / f"{gen}.tar.gz") as tar:
        tar.extractall(data, filter="data")
    expect = _expect(gen)
    mem = Memcli()
    try:
        report = mem.doctor()
        assert report.ok, [f for f in report.findings if not f.ok]
        assert mem._ctx.store.catalog.schema_version() == SCHEMA_VERSION
        _check_answers(mem, expect)
        purged = mem.history(expect["ids"]["purged"])
        assert purged.memory is None and [e.action for e in purged.events] == ["purge"]
    finally:
        mem.close()


@pytest.mark.parametrize("gen", GENERATIONS)
def test_an_old_export_imports_and_answers_the_same(gen: str, mem: Memcli) -> None:
    result = mem.import_(FIXTURES / f"{gen}.export.jsonl")
    assert not result.skipped and result.reembedded == 0 and result.dangling_links == 0
    _check_answers(mem, _expect(gen))
