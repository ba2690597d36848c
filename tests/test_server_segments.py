"""The server's change log split into segments (several collections), against a real `chroma run`:
appends roll over by size, and every reader (sync, rebuild, purge, doctor) still sees every record.

Segments are made tiny here so that a few adds roll over; list_collections pages are tiny too.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chroma_server import ChromaServer
from conftest import export_lines

import memcli.backends.chroma_server as chroma_server_mod
from memcli.api import Memcli
from memcli.backends.chroma_server import LOG_COLLECTION, segment_start

NOTES = {
    "garden.md": "# Garden\n\nThe apple tree by the shed needs pruning in February.\n\n"
    "## Beds\n\nCarrots and leeks went into the raised bed on the south side.\n",
    "car.md": "# Car\n\nThe winter tyres are stored at the tyre hotel on Mill Road, ticket 4471.\n",
}
FACTS = [
    "Pickle the beagle saw the vet: ten days of rest on the lead.",
    "The spare key is under the blue flowerpot.",
    "The boiler service is due in March.",
    "Book the dentist for the kids before the school term starts.",
    "The neighbour's wifi password is on the fridge door.",
    "Water the tomatoes every second evening in July.",
]


@pytest.fixture(autouse=True)
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chroma_server_mod, "SEGMENT_BYTES", 3000)  # about two adds per segment
    monkeypatch.setattr(chroma_server_mod, "LIST_PAGE", 2)  # list_collections answers in several pages


@pytest.fixture
def raw(chroma_server: ChromaServer, server_db: str) -> Iterator[Any]:
    """A plain chromadb client on the test's server database (to look at what memcli left there)."""
    import chromadb
    from chromadb.config import Settings

    yield chromadb.HttpClient(
        host="127.0.0.1", port=chroma_server.port, database=server_db, settings=Settings(anonymized_telemetry=False)
    )


def segments(raw: Any) -> list[str]:
    """The change log's segment collections on the server, oldest first."""
    names = [c.name for c in raw.list_collections() if segment_start(c.name) is not None]
    return sorted(names, key=lambda n: (segment_start(n), n))


def documents(raw: Any, name: str) -> dict[str, str]:
    got = raw.get_collection(name, embedding_function=None).get(include=["documents"])
    return dict(zip(got["ids"], got["documents"]))


def write_across_segments(a: Memcli, tmp_path: Path) -> None:
    """Adds, an ingest, a forget, a recall's counter bumps, a link: enough to fill several segments."""
    notes = tmp_path / "notes"
    notes.mkdir()
    for name, text in NOTES.items():
        (notes / name).write_text(text)
    ids = [a.add(t, tags=["home"]).added[0].id for t in FACTS]
    a.ingest([notes])
    a.forget([ids[1]])
    a.recall("when is the boiler service", k=2)
    a._ctx.store.link(ids[0], ids[2], "related")


def same_store(x: Memcli, y: Memcli) -> None:
    assert export_lines(x) == export_lines(y)  # memories, audit, links, counters
    for q in ("raised bed vegetables", "winter tyres", "boiler", "vet rest"):
        rx = [(h.memory.id, h.dense_rank, h.keyword_rank) for h in x.recall(q, k=5, touch=False).hits]
        ry = [(h.memory.id, h.dense_rank, h.keyword_rank) for h in y.recall(q, k=5, touch=False).hits]
        assert rx == ry and rx
        assert any(r[2] is not None for r in rx) or q == "vet rest"  # the keyword index answered too


def test_appends_roll_over_and_a_second_device_sees_the_same_memory(
    device: Callable[..., Memcli], raw: Any, tmp_path: Path
) -> None:
    a = device("laptop")
    write_across_segments(a, tmp_path)
    names = segments(raw)
    assert len(names) >= 4 and LOG_COLLECTION not in names  # a new store starts with dated segments
    held = [len(documents(raw, n)) for n in names]
    assert all(held) and sum(held) == a._ctx.store.catalog.journal.log.count()  # type: ignore[union-attr]
    b = device("desktop")
    assert {m.text for m in b.list(limit=100).memories} == {m.text for m in a.list(limit=100).memories}
    same_store(a, b)
    for m in (a, b):
        report = m.doctor()
        cache = next(f for f in report.findings if f.check == "server cache")
        assert report.ok and cache.ok and f"{sum(held)} of {sum(held)}" in cache.detail
    # A transaction's parts all land in one segment (replay needs it whole).
    for n in names:
        tx_parts: dict[str, set[int]] = {}
        got = raw.get_collection(n, embedding_function=None).get(include=["metadatas"])
        for meta in got["metadatas"]:
            tx_parts.setdefault(meta["tx"], set()).add(meta["part"])
            assert len(tx_parts[meta["tx"]]) <= meta["parts"]
        assert all(len(p) == next(m["parts"] for m in got["metadatas"] if m["tx"] == tx) for tx, p in tx_parts.items())


def test_a_cache_rebuilt_from_a_multi_segment_log_equals_the_writers(
    device: Callable[..., Memcli], raw: Any, tmp_path: Path
) -> None:
    import shutil

    a = device("a")
    write_across_segments(a, tmp_path)
    assert len(segments(raw)) >= 4
    b = device("b")
    b.list()
    b.close()
    shutil.rmtree(tmp_path / "b" / "data" / "server-cache")  # b's cache is lost: rebuilt from every segment
    b = device("b")
    same_store(a, b)
    assert any("rebuilding the local cache" in n for n in b.notices)
    fresh = device("c")  # a machine that never had a cache
    same_store(a, fresh)
    assert [act for _, act, _ in fresh._ctx.store.catalog.history(a.list(trash=True).memories[0].id)] == ["add", "trash"]


def test_purge_scrubs_every_segment(device: Callable[..., Memcli], raw: Any, tmp_path: Path) -> None:
    marker = "zanzibarquokka7731"
    a = device("a")
    doomed = a.add(f"My secret word is {marker}, never tell anyone").added[0]
    a.recall(marker)  # its id and text in a later record too
    write_across_segments(a, tmp_path)
    names = segments(raw)
    quoting = [n for n in names if any(marker in d for d in documents(raw, n).values())]
    assert quoting and quoting[0] != names[-1]  # its add sits in an older, sealed segment
    b = device("b")
    assert any(marker in m.text for m in b.list(limit=50).memories)
    b.close()
    a.forget([doomed.id], purge=True)
    assert all(marker not in d for n in segments(raw) for d in documents(raw, n).values())
    b = device("b")
    assert all(marker not in m.text for m in b.list(limit=50).memories)
    b.close()
    assert marker.encode() not in b"".join(p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file())
    c = device("c")  # rebuilt from the scrubbed segments: the same store
    assert export_lines(c) == export_lines(a)
    assert [act for _, act, _ in c._ctx.store.catalog.history(doomed.id)] == ["purge"]


def test_a_store_written_before_segments_still_syncs_and_grows_new_segments(
    device: Callable[..., Memcli], raw: Any, tmp_path: Path
) -> None:
    a = device("a")
    write_across_segments(a, tmp_path)
    a.close()
    # Rewrite the server as the previous memcli left it: every record in the one `memcli.changelog`,
    # a collection without segment metadata.
    legacy = raw.create_collection(LOG_COLLECTION, embedding_function=None)
    for n in segments(raw):
        if n == LOG_COLLECTION:
            continue
        got = raw.get_collection(n, embedding_function=None).get(include=["documents", "metadatas"])
        legacy.add(ids=got["ids"], embeddings=[[1.0]] * len(got["ids"]), documents=got["documents"], metadatas=got["metadatas"])
        raw.delete_collection(n)
    assert segments(raw) == [LOG_COLLECTION]
    old_n = legacy.count()
    a = device("a")  # its cache already holds everything: a plain sync, no rebuild
    c = device("c")  # a new machine: rebuilt from the legacy collection
    same_store(a, c)
    assert not any("rebuilding" in n for n in a.notices)
    added = a.add("Written after the upgrade to segments.").added[0]
    names = segments(raw)
    assert names[0] == LOG_COLLECTION and len(names) == 2 and legacy.count() == old_n  # the new append went to a new segment
    c = device("c")
    assert c.show(added.id).text == "Written after the upgrade to segments."
    same_store(a, c)


def test_the_count_check_finds_a_record_missing_from_a_sealed_segment(
    device: Callable[..., Memcli], raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts of segments sealed longer than the skew window are kept locally (not asked again); a record
    of such a segment that the cache lacks, older than the window the sync re-reads, is still found."""
    real = time.time_ns
    a = device("a")
    monkeypatch.setattr(time, "time_ns", lambda: real() - 3600 * 10**9)  # these were written an hour ago
    early = [a.add(t).added[0] for t in FACTS[:4]]
    monkeypatch.undo()
    late = [a.add(t).added[0] for t in FACTS[4:]]
    names = segments(raw)
    old = [n for n in names if (segment_start(n) or 0) < real() // 1_000_000 - 1800_000]
    assert len(old) >= 2
    sealed_long = old[:-1]  # the last hour-old segment was sealed by one started just now

    b = device("b")  # a new cache, rebuilt from the log: it notes the counts of the long-sealed segments
    assert len(b.list(limit=50).memories) == len(early) + len(late)
    cache = b._ctx.store.catalog.path
    b.close()
    with sqlite3.connect(cache) as db:
        kept = dict(db.execute("SELECT segment, records FROM replica_sealed"))
    assert kept == {n: len(documents(raw, n)) for n in sealed_long}
    counted: list[str] = []
    real_counts = chroma_server_mod.ChangeLog.counts

    def spy(self: Any, names: Any) -> dict[str, int]:
        counted.extend(names)
        return real_counts(self, names)

    monkeypatch.setattr(chroma_server_mod.ChangeLog, "counts", spy)
    b = device("b")
    b.list()
    assert counted and not set(counted) & set(sealed_long)  # their counts came from the cache
    b.close()
    with sqlite3.connect(cache) as db:
        # The cache loses the first memory: its add was an hour ago, in a long-sealed segment.
        tx_of = {i: tx for i, tx in db.execute("SELECT id, tx FROM replica_applied")}
        add_ids = [i for i, d in documents(raw, sealed_long[0]).items() if early[0].id in d]
        assert add_ids
        db.execute(f"DELETE FROM replica_applied WHERE tx IN ({','.join('?' * len(add_ids))})", [tx_of[i] for i in add_ids])
        db.execute("DELETE FROM memories WHERE id = ?", (early[0].id,))
    b = device("b")
    assert early[0].id in {m.id for m in b.list(limit=50).memories}
    assert export_lines(b) == export_lines(a)
    assert b.doctor().ok


def test_a_bulk_transaction_gets_a_sealed_segment_of_its_own(
    device: Callable[..., Memcli], raw: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large records are what slow a collection's writes: the adds after an ingest append elsewhere."""
    monkeypatch.setattr(chroma_server_mod, "SEGMENT_BYTES", 10**9)  # only the bulk rule rolls over here
    monkeypatch.setattr(chroma_server_mod, "BULK_BYTES", 2000)
    a = device("laptop")
    a.add("The spare key is under the blue flower pot.")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "garden.md").write_text(
        "# Garden\n\n" + "\n\n".join(f"Bed {i}: tomatoes, basil and marigolds." * 8 for i in range(12))
    )
    a.ingest([notes])  # one transaction of more than BULK_BYTES
    a.add("The boiler service is due in March.")
    a.add("The car's winter tyres are in the garage.")
    names = segments(raw)
    held = [len(documents(raw, n)) for n in names]
    assert len(names) == 3, held  # the first add | the ingest alone | the later adds together
    bulk_docs = documents(raw, names[1])
    assert any("tomatoes" in d for d in bulk_docs.values()) and not any("boiler" in d for d in bulk_docs.values())
    later = documents(raw, names[2])  # the later adds' transactions, together (each add writes more than one)
    assert any("boiler" in d for d in later.values()) and any("winter tyres" in d for d in later.values())
    assert not any("tomatoes" in d for d in later.values()) and held[2] >= 2
    b = device("desktop")
    assert {m.text for m in b.list(limit=100).memories} == {m.text for m in a.list(limit=100).memories}
