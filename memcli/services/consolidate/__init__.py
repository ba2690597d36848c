"""`memcli consolidate`: leave the store smaller, truer and better organised (run it nightly).

Steps, in order; the LLM ones are skipped (and the report says why) without a chat model:

* dedupe (no LLM) — near-identical facts/summaries merge into the earliest one (union of tags,
  earliest event time, summed recall counts, ``merged_from`` links, audit); copies go to the trash;
* reconcile (LLM) — pairs of related current facts: the older of a contradiction is retired with the
  time it stopped being true, refinements merge into one statement; nothing is deleted;
* summarise (LLM) — each finished day of episodes becomes a daily summary, each finished week of
  daily summaries a weekly one (HEMA/MemoryBank's two levels), linked to what they summarise;
* profile (LLM) — the user portrait (facts, preferences, communication style) is rewritten from the
  facts learned since the last one, within ``[chat] profile_tokens``;
* link (no LLM) — changed memories get ``related`` links to their closest neighbours (A-MEM);
* decay (no LLM) — retention scores are refreshed and prune candidates reported (never pruned).

Safe to kill at any point and to run from cron:

* a lock file (``DATA/consolidate.lock``) keeps two runs apart (the second fails with ExitCode.BUSY,
  or queues with ``wait``); memory writes go through the store and its write lock;
* each step reads a change feed — the audit log, whose ``seq`` only grows — from its own cursor in the
  catalog's meta table, and commits the cursor after each batch; work that failed or cannot be done
  yet holds the cursor back, so it is fed again next time;
* every change is one catalog transaction (a merge, a retirement, a batch of links), or, where the
  store needs several (a new summary, then its links and the retirement of the one it replaces), an
  intent written to the meta table first and completed by the next run if this one dies between;
* what a step has done is checked against the store itself before it is redone (a day whose current
  summary links to exactly its episodes is done), so a run resumed from an older cursor repeats nothing.

Layout: ``runner`` runs the steps in the order of its table (``STEP_RUNS``), one module each —
``dedupe``, ``contradictions`` (the reconcile step), ``summarise``, ``profile``, ``link``, ``decay`` —
with what they share in ``shared``; what it asks of the catalog is memcli/store/consolidation.py.
"""

from memcli.services.consolidate.link import STRUCTURAL_TAGS
from memcli.services.consolidate.profile import render_profile
from memcli.services.consolidate.reports import LLM_STEPS, NO_MODEL, ConsolidateReport, StepReport
from memcli.services.consolidate.runner import STEP_RUNS, STEPS, consolidate, run_lock
from memcli.services.consolidate.shared import norm, same_text
from memcli.store.consolidation import INTENT

__all__ = [
    "INTENT",
    "LLM_STEPS",
    "NO_MODEL",
    "STEPS",
    "STEP_RUNS",
    "STRUCTURAL_TAGS",
    "ConsolidateReport",
    "StepReport",
    "consolidate",
    "norm",
    "render_profile",
    "run_lock",
    "same_text",
]
