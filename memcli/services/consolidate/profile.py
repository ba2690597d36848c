"""profile (LLM): the user portrait (facts, preferences, communication style) is rewritten from the
facts learned or dropped since the last one, within ``[chat] profile_tokens``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memcli.prompts import consolidate as prompts
from memcli.records import Kind
from memcli.services.consolidate.shared import SOURCE, Feed, Run, Step, became_true, norm
from memcli.store import NewMemory
from memcli.text.short import short

PROFILE_MESSAGES = 15  # recent user messages shown for their communication style


def run(run: Run, st: Step) -> None:
    feed = Feed(run, "profile")
    # Any change to a fact (learned, retired, merged, forgotten) may change the portrait.
    changed = feed.items([Kind.FACT.value], actions=None, active_only=False)
    old = run.data.newest_profile(run.space)
    if not changed and old is not None:
        return feed.commit()
    merged = run.data.merged_ids()
    fresh = [m for _, m in changed if m.state == "active" and m.current]
    # A merged copy is not a dropped fact: its survivor still says it.
    gone = [m for _, m in changed if not (m.state == "active" and m.current) and m.id not in merged]
    if old is None:  # the first portrait: from every current fact
        fresh = run.pool(Kind.FACT.value, owned_ok=True).mems
    if not fresh and not gone:
        return feed.commit()
    st.add("facts_considered", len(fresh))
    st.add("facts_dropped", len(gone))
    if run.dry_run:
        st.add("profile_to_update")
        return None
    assert run.model is not None
    if not run.can_call():
        st.add("deferred")
        return None  # the cursor stays: next run
    budget = run.ctx.settings.chat.profile_tokens
    count, input_tokens = run.model.count_tokens, run.cfg.input_tokens
    fresh.sort(key=became_true)
    facts = _fit_lines([f"- {m.text}" for m in fresh], input_tokens // 2, count)
    retired = _fit_lines([f"- {m.text}" for m in gone], input_tokens // 4, count)
    said = run.data.recent_user_messages(run.space, PROFILE_MESSAGES)
    messages = _fit_lines([f"- {short(m.text.removeprefix('user: '), 200)}" for m in said], input_tokens // 4, count)
    prompt = prompts.PROFILE.format(
        words=int(budget * 0.7), profile=old.text if old else prompts.NONE, facts=facts or prompts.NONE,
        retired=retired or prompts.NONE, messages=messages or prompts.NONE,
    )  # fmt: skip
    answer = run.ask(st, "profile", prompt, prompts.PROFILE_SCHEMA, "profile", budget * 2 + 128)
    if answer is None:
        return None  # quarantined; the cursor stays, so it is tried again next run
    text, dropped = render_profile(answer, budget, count)
    st.add("profile_lines_cut", dropped)
    if old is not None and norm(text) == norm(old.text):
        st.add("profile_unchanged")
        return feed.commit()
    item = NewMemory(text=text, kind=Kind.PROFILE, source=f"{SOURCE}:profile", tags=("profile",), importance=0.9)
    links = [("derived_from", m.id) for m in fresh[-50:]]
    mid = run.write(item, links=links, replaces=[(old.id, "refine")] if old else [], note={"op": "profile"})
    if not st.confirm(run.landed(present=[mid], gone=[old.id] if old else []), "profile"):
        return None  # the cursor stays: tried again next run
    st.add("profile_updated")
    st.add("profile_tokens", count(text))
    st.example(short(text, 120))
    feed.commit()
    return None


def render_profile(answer: dict[str, Any], budget: int, count: Callable[[str], int]) -> tuple[str, int]:
    """The profile text from the model's structured answer, cut to ``budget`` tokens by dropping whole
    lines from the end (preferences first, then facts; the style line stays). Returns (text, lines cut)."""
    style = answer["style"]
    notes = " ".join(style["notes"].split())
    style_line = prompts.PROFILE_STYLE.format(
        formality=style["formality"], length=style["length"], humour=style["humour"], notes=f" {notes}" if notes else ""
    )
    facts = [f"- {' '.join(f.split())}" for f in answer["facts"]]
    prefs = [f"- {' '.join(p.split())}" for p in answer["preferences"]]

    def text() -> str:
        return "\n".join([*facts, *([prompts.PROFILE_PREFERENCES, *prefs] if prefs else []), style_line])

    cut = 0
    while count(text()) > budget and (prefs or facts):
        (prefs or facts).pop()
        cut += 1
    out = text()
    while count(out) > budget and " " in out:  # only the style line is left, and it is too long
        out = out.rsplit(" ", 1)[0]
    return out, cut


def _fit_lines(lines: list[str], budget: int, count: Callable[[str], int]) -> str:
    """As many lines as fit in ``budget`` tokens, keeping the newest (the end of the list)."""
    kept: list[str] = []
    used = 0
    for line in reversed(lines):
        n = count(line) + 1
        if used + n > budget:
            break
        kept.append(line)
        used += n
    return "\n".join(reversed(kept))
