"""prune, history, export, import: the life of memories after they are written."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from memcli.cli.common import JsonOpt, KindOpt, SpaceOpt, api, fmt_time, kinds, short_id

if TYPE_CHECKING:
    from memcli.api import PrunePlan, PruneResult


def prune(
    kind: KindOpt = None,
    older_than: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--older-than", min=0, metavar="DAYS", help="Only memories not recalled or recorded in DAYS days."),
    ] = None,
    threshold: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--threshold", min=0, max=0.999, help="Retention below which a memory has faded (default from config)."),
    ] = None,
    purge: Annotated[bool, typer.Option("--purge", help="Erase faded memories instead of moving them to the trash.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply the plan without asking.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="With --yes: apply even if more than [lifecycle] max_change_fraction would go.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show the plan.")] = False,
    space: SpaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Let faded memories go: those whose retention (which falls with time since their last recall,
    slower for often-recalled and important ones) is below the threshold move to the trash, and the
    trash is emptied of what has been there longer than lifecycle.trash_max_age_days. Only
    conversation turns and summaries fade unless --kind names others (lifecycle.prune_kinds). Pinned,
    profile, recently recalled and superseded memories are never pruned. Shows the plan first.
    --yes refuses a plan over the change budget (exit 10) unless --force."""
    from memcli import ui
    from memcli.errors import ExitCode

    mem = api(space)
    result = mem.prune(space=space, kinds=kinds(kind), older_than=older_than, threshold=threshold, purge=purge)
    plan = result.plan
    if dry_run or not (plan.candidates or plan.expired_trash):
        return _show_plan(
            result, json_, "dry run: nothing was changed" if dry_run else f"nothing to prune ({plan.scored} memories looked at)"
        )
    if not yes:
        if json_ or not sys.stdin.isatty():
            return _show_plan(result, json_, "plan only, nothing was changed: run again with --yes to apply it")
        _show_plan(result, False, "")
        if not typer.confirm(_question(plan, purge), default=False):
            ui.notice("nothing was changed")
            return
        force = True  # the budget guards unattended runs: this one was read and agreed to
    done = mem.apply_prune(plan, purge=purge, force=force)
    if json_:
        ui.emit_json("prune", done.to_json())
        return _check_proof(done)
    if done.pruned:
        if done.purged:
            ui.line(f"purged {len(done.pruned)} faded memories: removed " + ", ".join(done.removed))
        else:
            ids = " ".join(short_id(i) for i in done.pruned)
            ui.line(f"moved {len(done.pruned)} faded memories to the trash (undo: memcli restore {ids})")
    if done.emptied:
        ui.line(f"emptied the trash of {len(done.emptied)} memories trashed more than {plan.trash_max_age_days:g} days ago")
    if done.skipped:
        ui.notice(f"left {len(done.skipped)} memories alone: recalled, pinned or changed since the plan was made")
    if done.proof is not None:
        ui.purge_proof(done.proof)
    _check_proof(done)
    if done.unconfirmed:
        ui.notice(f"{len(done.unconfirmed)} changes did not show in the store when read back: run `memcli doctor`")
        raise typer.Exit(int(ExitCode.PARTIAL))


def _question(plan: PrunePlan, purge: bool) -> str:
    parts = []
    if plan.candidates:
        parts.append(f"{'erase' if purge else 'move to the trash'} these {len(plan.candidates)} memories")
    if plan.expired_trash:
        parts.append(f"erase {len(plan.expired_trash)} memories from the trash")
    text = " and ".join(parts)
    return text[0].upper() + text[1:] + "?"


def _show_plan(result: PruneResult, json_: bool, message: str) -> None:
    from memcli import ui

    if json_:
        ui.emit_json("prune", result.to_json())
        if message:
            ui.notice(message)
        return
    plan = result.plan
    if plan.candidates:
        ui.table(
            ["id", "kind", "retention", "days", "recalls", "why", "text"],
            [
                (
                    short_id(c.memory.id),
                    c.memory.kind.value,
                    f"{c.retention.score:.3f}",
                    f"{c.retention.age_days:.0f}",
                    c.memory.access_count,
                    c.why,
                    ui.short(c.memory.text, 50),
                )
                for c in plan.candidates
            ],
            title=f"faded below {plan.threshold:g} in space {plan.space}",
        )
    if plan.candidates:
        verb = "erased" if result.purged else "moved to the trash"
        ui.notice(f"{len(plan.candidates)} of {plan.scored} memories have faded and would be {verb}")
    kept = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in plan.protected.items() if n)
    if kept:
        ui.notice(f"faded but kept: {kept}")
    if plan.expired_trash:
        ui.notice(
            f"{len(plan.expired_trash)} memories have been in the trash more than {plan.trash_max_age_days:g} days "
            "and would be erased"
        )
    over = plan.over_budget(purge=result.purged)
    if over is not None:
        ui.notice(f"{over.excess}: --yes applies it only with --force")
    if message:
        ui.notice(message)


def history(
    ref: Annotated[str, typer.Argument(help="Memory id (or a unique prefix); a purged memory's id works too.")],
    json_: JsonOpt = False,
) -> None:
    """What happened to a memory: added, trashed, restored, superseded or refined (and by what),
    purged; its links; when it was true."""
    from memcli import ui

    h = api().history(ref)
    if json_:
        return ui.emit_json("history", h.to_json())
    m = h.memory
    if m is None:
        ui.kv([("id", h.id), ("state", "purged: only its audit entries remain")])
    else:
        ui.kv(
            [
                ("id", m.id),
                ("state", m.state + ("" if m.current else ", retired")),
                ("kind", m.kind.value),
                ("recorded", fmt_time(m.recorded_at)),
                ("happened", fmt_time(m.event_at)),
                ("true from", fmt_time(m.valid_from)),
                ("true until", fmt_time(m.valid_until)),
                ("retired", fmt_time(m.retired_at)),
                ("superseded by", m.superseded_by or ""),
                ("text", ui.short(m.text, 100)),
            ]
        )
    ui.line()
    ui.table(["when", "action", "detail"], [(fmt_time(e.at), e.action, _detail(e.detail)) for e in h.events], title="audit")
    if h.links:
        ui.table(
            ["relation", "other", "when", "text"],
            [
                (
                    f"this {link.kind}" if link.outgoing else f"{link.kind} this",
                    short_id(link.other),
                    fmt_time(link.at),
                    ui.short(link.other_text, 60) if link.other_text is not None else "(gone)",
                )
                for link in h.links
            ],
            title="links",
        )


def _detail(detail: dict[str, Any]) -> str:
    from memcli.records import from_epoch

    def value(k: str, v: Any) -> str:
        if isinstance(v, float) and k.endswith(("_until", "_at", "_from")):
            return fmt_time(from_epoch(v))
        return str(v)

    return ", ".join(f"{k} {value(k, v)}" for k, v in detail.items() if v is not None)


def export(
    file: Annotated[Optional[str], typer.Argument(help="Where to write it; '-' (or nothing) for stdout.")] = None,  # noqa: UP045
    space: Annotated[Optional[str], typer.Option("--space", "-s", help="Only this space (default: every space).")] = None,  # noqa: UP045
    trash: Annotated[bool, typer.Option("--trash/--no-trash", help="Include what is in the trash.")] = True,
    markdown: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--markdown", metavar="DIR", help="Also write a readable tree: DIR/SPACE/KIND.md."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Write every memory, with all its fields, embedding, links and audit log, as versioned JSONL
    (`memcli import` reads it back; format in the README)."""
    from memcli import ui
    from memcli.errors import usage_error

    to_stdout = (file is None and markdown is None) or file == "-"
    if to_stdout and json_:
        raise usage_error("--json needs a FILE: the export itself goes to stdout", hint="memcli export FILE --json")
    if to_stdout and sys.stdout.isatty():
        raise usage_error(
            "refusing to write the export to a terminal", hint="Give a FILE, or pipe it: memcli export | gzip > x.gz"
        )
    dest: Path | Any = sys.stdout if to_stdout else (Path(file) if file is not None else None)
    r = api(space).export(dest, space=space, trash=trash, markdown=markdown)
    if json_:
        return ui.emit_json("export", r.to_json())
    say = ui.notice if to_stdout else ui.line
    if r.path:
        say(
            f"exported {r.memories} memories ({r.trashed} in the trash), {r.links} links, {r.audit} audit entries, "
            f"{r.sources} sources from {', '.join(r.spaces) or 'no spaces'}" + ("" if to_stdout else f" to {r.path}")
        )
    if r.markdown_dir:
        say(f"wrote {r.markdown_files} Markdown files under {r.markdown_dir}")


def import_(
    file: Annotated[str, typer.Argument(help="A file written by `memcli export`, or '-' for stdin.")],
    json_: JsonOpt = False,
) -> None:
    """Read back what `memcli export` wrote: ids are kept, ids already here are skipped, embeddings are
    reused when the model matches. A malformed file imports nothing."""
    from memcli import ui

    source: Path | bytes = sys.stdin.buffer.read() if file == "-" else Path(file)
    r = api().import_(source, name="stdin" if file == "-" else file)
    if json_:
        return ui.emit_json("import", r.to_json())
    ui.line(
        f"imported {len(r.added)} memories" + (f" into {', '.join(r.spaces)}" if r.spaces else "")
        + f", {r.links} links, {r.audit} audit entries, {r.sources} sources"
    )  # fmt: skip
    if r.skipped:
        ui.line(f"skipped {len(r.skipped)} memories already in the store")
    if r.reembedded:
        ui.notice(f"re-embedded {r.reembedded} memories written with another embedding model")
    if r.dangling_links:
        ui.notice(f"left out {r.dangling_links} links to memories in neither the file nor the store")


ToOpt = Annotated[Optional[str], typer.Option("--to", metavar="URL", help="Move the embedded store to the Chroma server at URL.")]  # noqa: UP045
FromOpt = Annotated[Optional[str], typer.Option("--from", metavar="URL", help="Move the store at URL into the embedded one.")]  # noqa: UP045


def migrate(
    to: ToOpt = None,
    from_: FromOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Move the memory store between the embedded store and a Chroma server, losslessly (every field,
    embedding, link and audit entry; ids kept). The target must be empty; the source is left as it
    was. Tenant, database and token come from [store] and MEMCLI_STORE_TOKEN."""
    from memcli import ui

    r = api().migrate(to_url=to, from_url=from_)
    if json_:
        return ui.emit_json("migrate", r.to_json())
    ui.line(
        f"moved {r.memories} memories ({', '.join(r.spaces) or 'no spaces'}), {r.links} links, {r.audit} audit entries, "
        f"{r.sources} sources from {r.source} to {r.target}"
    )
    if to:
        ui.notice(f'to use the server from now on, set [store] url = "{to}" in {api().config_file}')
    else:
        ui.notice('to use the embedded store from now on, set [store] url = "" (or remove it) in your config')


def _check_proof(done: PruneResult) -> None:
    """Erased memories whose text a scan still found: the purge did not keep its promise (exit STORE)."""
    from memcli.errors import ExitCode

    if done.proof is not None and not done.proof.clean:
        raise typer.Exit(int(ExitCode.STORE))
