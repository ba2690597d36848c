"""Crash safety: real memcli processes SIGKILLed at random points, then checked (see tests/crashkit.py).

The CI subset: 26 kills across add, ingest (a tree of 200 files), forget to the trash, forget --purge
and reindex. ``benchmarks/crash_loop.py`` runs the same loop with hundreds of kills and prints the table
recorded in benchmarks/RESULTS.md ("Crash safety").
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from crashkit import AddJob, ChatJob, ForgetJob, IngestJob, Job, ReindexJob, Tally, final_doctor, iteration, table
from scripted_server import scripted_server


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second embedding model (the same weights under another name: another model id)."""
    from memcli.models.bundled import bundled_minilm_dir
    from memcli.models.convert import convert_bert

    src = bundled_minilm_dir()
    assert src is not None
    return convert_bert(src, tmp_path_factory.mktemp("other") / "other-minilm.gguf", name="other-minilm").path


def run_loop(job: Job, kills: int, seed: int) -> Tally:
    rng = random.Random(seed)
    tally = Tally(job.name)
    job.measure(rng)
    for i in range(1, kills + 1):
        iteration(job, i, rng, tally)
    if isinstance(job, (AddJob, IngestJob, ChatJob)):
        final_doctor(job, tally)
    return tally


CASES: dict[str, tuple[Callable[[Path, Path, Path], Job], int]] = {
    "add": (lambda root, m, o: AddJob(root, m), 8),
    "ingest": (lambda root, m, o: IngestJob(root, m, files=200), 6),
    "forget-trash": (lambda root, m, o: ForgetJob(root, m, purge=False), 4),
    "forget-purge": (lambda root, m, o: ForgetJob(root, m, purge=True), 4),
    "reindex": (lambda root, m, o: ReindexJob(root, m, o, memories=100), 4),
}


@pytest.mark.parametrize("op", list(CASES))
def test_sigkill_loses_and_duplicates_nothing(op: str, tmp_path: Path, minilm_path: Path, other_model: Path) -> None:
    make, kills = CASES[op]
    tally = run_loop(make(tmp_path, minilm_path, other_model), kills, seed=zlib.crc32(op.encode()))
    print("\n" + table([tally]))
    assert tally.verdict.problems == []
    assert (tally.verdict.lost, tally.verdict.duplicates, tally.verdict.leaks) == (0, 0, 0)
    assert tally.doctor_ok == tally.attempts == kills and tally.reruns_ok == kills
    # The loop must really kill processes, not just watch them finish.
    assert tally.kills >= kills // 2


def test_sigkill_during_chat_memory_writing_loses_nothing(tmp_path: Path, minilm_path: Path) -> None:
    """`memcli chat -m` killed while it stores the exchange, extracts a fact and supersedes the old one
    (a scripted model server: the answers are what the test is about, not the model)."""
    with scripted_server() as url:
        tally = run_loop(ChatJob(tmp_path, minilm_path, url), 6, seed=zlib.crc32(b"chat"))
    print("\n" + table([tally]))
    assert tally.verdict.problems == []
    assert (tally.verdict.lost, tally.verdict.duplicates) == (0, 0)
    assert tally.doctor_ok == tally.attempts == 6 and tally.reruns_ok == 6
    assert tally.kills >= 3
