"""decay (no LLM): retention scores are refreshed and prune candidates reported (never pruned)."""

from __future__ import annotations

from memcli.services.consolidate.shared import EXAMPLES, Run, Step


def run(run: Run, st: Step) -> None:
    from memcli.services import retention

    report = retention.refresh(run.ctx, space=run.space, now=run.now, dry_run=run.dry_run)
    st.counts.update(report.counts)
    for e in report.examples[:EXAMPLES]:
        st.example(e)
