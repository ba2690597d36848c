"""The consolidate run: the lock, the recovery of a killed run's change, the steps in order, the log."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime

from memcli.backends.base import ChatModel
from memcli.context import Context
from memcli.errors import ExitCode, MemcliFailure
from memcli.paths import ensure_private_dir
from memcli.services.consolidate import contradictions, decay, dedupe, link, profile, summarise
from memcli.services.consolidate.reports import LLM_STEPS, NO_MODEL, ConsolidateReport, StepReport
from memcli.services.consolidate.shared import Run, Step

# The steps, in the order they run (each one's module says what it does). The names are the ones
# reports, cursors and the config use.
STEP_RUNS: Mapping[str, Callable[[Run, Step], None]] = {
    "dedupe": dedupe.run,
    "reconcile": contradictions.run,
    "summarise": summarise.run,
    "profile": profile.run,
    "link": link.run,
    "decay": decay.run,
}
STEPS = tuple(STEP_RUNS)


def consolidate(
    ctx: Context,
    *,
    space: str | None = None,
    model: ChatModel | str | None = None,
    use_llm: bool = True,
    dry_run: bool = False,
    since: datetime | None = None,
    wait: bool = False,
    now: datetime | None = None,
    force: bool = False,
) -> ConsolidateReport:
    """Run every step (see the package docstring). ``model``: the chat model, or a GGUF path / model name
    (default: the configured one); ``use_llm=False`` runs only the steps that need none; ``since``
    limits the work to what changed since then (default: since the last run); ``dry_run`` reports what
    would change and changes nothing; ``wait`` queues behind a running consolidate instead of failing
    with ExitCode.BUSY; ``now`` is the reference time (which days and weeks are over). A step that would
    take the run over the change budget takes nothing out (``report.over_budget``) unless ``force``."""
    space = ctx.space(space)
    started = datetime.now().astimezone()
    t0 = time.perf_counter()
    with run_lock(ctx, wait=wait):
        run = Run(ctx, space, dry_run, since, now or started, force=force)
        recovered = 0 if dry_run else run.data.recover_intent()
        since_label = run.since_label()
        steps: list[StepReport] = []
        try:
            llm_name, why_no_llm = _choose_model(run, model, use_llm)
            for name, step in STEP_RUNS.items():
                if name in LLM_STEPS and why_no_llm:
                    steps.append(StepReport(name, "skipped", why_no_llm))
                    continue
                steps.append(_run_step(run, name, step))
        finally:
            if run.loaded_model is not None:
                run.loaded_model.close()
        report = ConsolidateReport(
            space, started, dry_run, llm_name, since_label, tuple(steps), time.perf_counter() - t0, recovered,
            budget=run.budget, taken_out=run.taken_out, over_budget=run.over, forced=run.forced,
        )  # fmt: skip
        if not dry_run:
            with ctx.store.catalog.transaction() as db:
                ctx.store.catalog.set_meta(db, f"consolidate:{space}:last_run", json.dumps(report.to_json()))
            report = _log(ctx, report)
    return report


@contextmanager
def run_lock(ctx: Context, *, wait: bool) -> Iterator[None]:
    """The consolidate lock: one run per data directory (fcntl, released by the OS if the process dies)."""
    path = ensure_private_dir(ctx.paths.data_dir) / "consolidate.lock"
    f = open(os.open(path, os.O_CREAT | os.O_RDWR, 0o600), "r+")  # noqa: SIM115 - held across the yield
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                holder = f.read().strip()
                raise MemcliFailure(
                    "another `memcli consolidate` is running on this store" + (f" (pid {holder})" if holder else ""),
                    hint="Let it finish: nothing was done by this run. Use --wait to queue behind it.",
                    code=ExitCode.BUSY,
                )
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")  # for the message a second run prints
        f.flush()
        yield
    finally:
        f.close()  # closing releases the lock


def _choose_model(run: Run, model: ChatModel | str | None, use_llm: bool) -> tuple[str | None, str]:
    """(model name, why there is none). A model named here or in the config is loaded now (not in a
    dry run); one the config names that fails to load skips the LLM steps rather than the whole run."""
    cs = run.ctx.settings.chat
    if not use_llm:
        return None, "--no-llm"
    if model is not None and not isinstance(model, str):
        run.model = model
        return model.model_id, ""
    if model is None and not cs.model and not (cs.backend == "openai" and cs.url):
        return None, NO_MODEL
    if run.dry_run:
        return model or cs.model or cs.server_model or cs.url, ""
    try:
        run.model = run.loaded_model = run.ctx.load_chat_model(model)
    except MemcliFailure as e:
        if model is not None:
            raise  # asked for by name: say so rather than carry on without it
        return None, f"the configured chat model could not be loaded: {e.message}"
    return run.model.model_id, ""


def _run_step(run: Run, name: str, step: Callable[[Run, Step], None]) -> StepReport:
    t0 = time.perf_counter()
    st = Step(status="planned" if run.dry_run else "done")
    try:
        step(run, st)
    except Exception as e:  # one broken step must not stop the others (cron has nobody to ask)
        st.status, st.reason = "failed", getattr(e, "message", None) or f"{type(e).__name__}: {e}"
    return StepReport(
        name, st.status, st.reason, st.counts, time.perf_counter() - t0, st.calls, tuple(st.failures), tuple(st.examples),
        st.writes, st.unconfirmed,
    )  # fmt: skip


def _log(ctx: Context, report: ConsolidateReport) -> ConsolidateReport:
    """Append the report as one JSON line to LOGS/consolidate.log (owner-only)."""
    path = ensure_private_dir(ctx.paths.log_dir) / "consolidate.log"
    done = ConsolidateReport(**{**report.__dict__, "log_file": str(path)})
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(json.dumps(done.to_json(), ensure_ascii=False) + "\n")
    return done
