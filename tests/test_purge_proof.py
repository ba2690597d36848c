"""`forget --purge` and `prune --purge` prove what they did: where they scrubbed, and a scan of every
file memcli writes that found the purged text nowhere (issue 16, item 6)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result
from storekit import set_columns

from memcli.api import Memcli

SECRET = "My bank PIN is 4711, the safe code is 0815, and the spare key is under the blue pot"
KEPT = "The dentist appointment is on Thursday at nine"
DAY = 86400.0


def _data(home: Path) -> Path:
    return home / "data"


def test_forget_purge_scrubs_and_scans(mem: Memcli, home: Path) -> None:
    doomed = mem.add(SECRET).added[0].id
    mem.add(KEPT)
    # The REPL's line history and the consolidate log can quote a memory: both are memcli's files.
    history = _data(home) / "chat_history"
    history.write_text(f"\n# 2026-12-01 10:00:00\n+{SECRET}\n\n# 2026-12-01 10:01:00\n+{KEPT}\n", encoding="utf-8")
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    quoted = {"examples": [f"kept: {SECRET[:59]}…"], "step": "dedupe"}  # as consolidate quotes a memory
    (logs / "consolidate.log").write_text(json.dumps(quoted) + "\n", encoding="utf-8")

    result = mem.forget([doomed], purge=True)
    proof = result.proof
    assert proof is not None and proof.clean, proof
    assert proof.checked == 1 and proof.scanned_files >= 3 and proof.scanned_bytes > 0
    assert any("chat line history" in s for s in proof.scrubbed) and any("log" in s for s in proof.scrubbed)
    assert SECRET not in history.read_text(encoding="utf-8") and KEPT in history.read_text(encoding="utf-8")
    log = json.loads((logs / "consolidate.log").read_text(encoding="utf-8"))
    assert log == {"examples": ["[purged]"], "step": "dedupe"}  # the whole quote, not just its start
    for p in [*_data(home).rglob("*"), *logs.rglob("*")]:  # the scan's claim, checked independently
        if p.is_file() and "models" not in p.parts:
            assert SECRET.encode() not in p.read_bytes(), p
    assert result.to_json()["proof"]["clean"] is True


def test_a_copy_memcli_does_not_scrub_is_found_and_the_cli_says_so(cli: Callable[..., Result], home: Path) -> None:
    added = cli("add", SECRET, "--json").json()["data"]["added"][0]["id"]
    stray = _data(home) / "stray-copy.txt"  # e.g. a backup someone left inside memcli's folder
    stray.write_text(f"notes: {SECRET}\n", encoding="utf-8")
    r = cli("forget", added, "--purge", "--yes", "--json")
    proof = r.json()["data"]["proof"]
    assert not proof["clean"] and proof["found_in"] == [str(stray)]
    assert r.code == 6  # the promise was not kept: exit STORE, not success


def test_short_or_still_said_texts_are_named_not_searched(mem: Memcli) -> None:
    short = mem.add("PIN 47").added[0].id
    echo = mem.add(KEPT + " (copy)").added[0].id
    mem.add(KEPT + " (copy) and more")  # a kept memory still says the purged words
    proof = mem.forget([short, echo], purge=True).proof
    assert proof is not None and proof.checked == 0 and proof.clean
    why = " ".join(proof.unchecked)
    assert short[:8] in why and "shorter" in why and echo[:8] in why and "still kept" in why


@pytest.mark.embedded_only
def test_prune_purge_proves_too(mem: Memcli) -> None:
    mid = mem.add(SECRET).added[0].id
    mem.forget([mid])
    set_columns(mem, mid, trashed_at=time.time() - 400 * DAY)  # long in the trash: prune empties it
    done = mem.prune(apply=True)
    assert mid in done.emptied
    assert done.proof is not None and done.proof.clean and done.proof.checked == 1
    assert mem.prune(apply=True).proof is None  # nothing erased, nothing to prove
