"""`memcli consolidate` survives SIGKILL at random points: the store always opens consistent, a final
run completes, no memory is lost and no duplicate is left.

The loop itself lives in benchmarks/consolidate_kill.py (which runs it with 200 kills); here it runs
15 times. Every step runs in its own process: this one never opens the store.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from consolidate_kill import kill_loop  # noqa: E402

KILLS = 15


def test_consolidate_survives_being_killed(tmp_path: Path, minilm_path: Path) -> None:
    fig = kill_loop(tmp_path / "home", minilm_path, kills=KILLS, facts=240, seed=11)
    print(
        f"\nconsolidate kill loop: {fig.kills} kills survived ({fig.finished_before_kill} runs finished first, "
        f"{fig.replayed} unfinished writes completed on reopening), {fig.memories} memories, {fig.merged} merged, "
        f"{fig.lost} lost, {fig.duplicates_left} duplicates left, final run exit {fig.final_rc}, {fig.seconds:.0f} s"
    )
    assert fig.problems == ()
    assert fig.kills == KILLS and fig.inconsistent == 0
    assert fig.final_rc == 0 and fig.lost == 0 and fig.duplicates_left == 0
    assert fig.merged > 0  # there was real work to interrupt
