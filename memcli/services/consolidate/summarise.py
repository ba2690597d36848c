"""summarise (LLM): each finished day of episodes becomes a daily summary, each finished week of daily
summaries a weekly one (HEMA/MemoryBank's two levels), linked to what they summarise.

A period is done when its one current summary links to exactly its sources; a period that changed
since (a turn added or forgotten) is summarised again, and the new summary replaces the old one."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from memcli.prompts import consolidate as prompts
from memcli.records import Kind, Memory
from memcli.services.consolidate.shared import SOURCE, Feed, Run, Step, local_day
from memcli.store import NewMemory
from memcli.text.short import short


def run(run: Run, st: Step) -> None:
    feed = Feed(run, "summarise")
    today = run.now.astimezone().date()
    this_week = today - timedelta(days=today.weekday())
    # Trashed turns count too: a day that lost one is summarised again without it.
    fed = feed.items([Kind.EPISODE.value], actions=None, active_only=False)
    days: dict[date, int] = {}
    for seq, m in fed:
        d = local_day(m.when.timestamp())
        days[d] = min(days.get(d, seq), seq)
    weeks: dict[date, int] = {}
    failed_weeks: set[date] = set()
    for d in sorted(days):
        week = d - timedelta(days=d.weekday())
        weeks[week] = min(weeks.get(week, days[d]), days[d])
        if d >= today:
            feed.defer(days[d])  # not over yet: summarised once it is
            continue
        if not _day(run, st, d):
            feed.defer(days[d])
            failed_weeks.add(week)
    for week in sorted(weeks):
        if week >= this_week or week in failed_weeks:
            feed.defer(weeks[week])  # a week is summarised when it is over and all its days are
            continue
        if not _week(run, st, week):
            feed.defer(weeks[week])
    feed.commit()


def _day(run: Run, st: Step, d: date) -> bool:
    """Summarise one day if it needs it. False: it could not be done now (failure, call budget)."""
    episodes = run.data.episodes_between(run.space, _day_start(d), _day_start(d + timedelta(days=1)))
    lines = [f"{m.when.astimezone():%H:%M} {m.text}" for m in episodes]
    return _period(run, st, "daily", d.isoformat(), d, episodes, lines, f"{d:%A %d %B %Y}")


def _week(run: Run, st: Step, week: date) -> bool:
    days = [week + timedelta(days=i) for i in range(7)]
    dailies = [s for d in days for s in run.data.summaries_with_tags(run.space, ["daily", d.isoformat()])[:1]]
    year, num, _ = week.isocalendar()
    lines = [f"{s.tags[1] if len(s.tags) > 1 else ''}: {s.text}" for s in dailies]
    words = f"week {num} of {year}, {days[0]:%d %B} to {days[-1]:%d %B %Y}"
    return _period(run, st, "weekly", f"{year}-W{num:02d}", week, dailies, lines, words)


def _period(run: Run, st: Step, level: str, tag: str, first: date, sources: list[Memory], lines: list[str], words: str) -> bool:
    current = run.data.summaries_with_tags(run.space, [level, tag])
    want = {m.id for m in sources}
    if current and run.data.link_targets(current[0].id, "summarises") == want and len(current) == 1:
        return True  # already summarised, nothing new since
    if not sources and not current:
        return True
    key = "days" if level == "daily" else "weeks"
    st.add(f"{key}_to_summarise")
    if run.dry_run:
        return True
    replaces = [(s.id, "trash" if _sources_removed(run, s) else "refine") for s in current]
    if not sources:  # everything it summarised was forgotten
        for s in current:
            run.store.trash([s], reason="what it summarised was forgotten")
        if not st.confirm(run.landed(gone=[s.id for s in current]), f"{level} summary {tag} trashed"):
            return False
        st.add("summaries_trashed", len(current))
        return True
    text = _ask_summary(run, st, level, tag, first, lines)
    if text is None:
        return False
    item = NewMemory(
        text=text, kind=Kind.SUMMARY, source=f"{SOURCE}:{level}", event_at=_day_start(first), tags=(level, tag),
        keys=f"{level} summary {words}", importance=0.6,
    )  # fmt: skip
    links = [("summarises", m.id) for m in sources]
    mid = run.write(item, links=links, replaces=replaces, note={"op": "summarise", "period": tag, "sources": len(sources)})
    if not st.confirm(run.landed(present=[mid], gone=[s.id for s in current]), f"{level} summary {tag}"):
        return False  # the period is fed again next run
    st.add(f"{level}_written")
    st.add("summaries_replaced", len(current))
    st.example(f"{tag}: {short(text)}")
    return True


def _sources_removed(run: Run, summary: Memory) -> bool:
    """Was something this summary was written from forgotten since (trashed, or purged: its link is
    gone)? Then the summary still says it, and is trashed rather than kept as history."""
    linked = run.data.link_targets(summary.id, "summarises")
    if any(m.state != "active" for m in run.cat.by_ids(linked).values()):
        return True
    written_from = run.data.summarised_count(summary.id)
    return written_from is not None and written_from > len(linked)


def _ask_summary(run: Run, st: Step, level: str, tag: str, first: date, lines: list[str]) -> str | None:
    """Summarise ``lines`` in parts that fit [consolidate] input_tokens, each building on the last."""
    assert run.model is not None
    count, budget = run.model.count_tokens, run.cfg.input_tokens
    parts: list[list[str]] = [[]]
    used = 0
    for line in lines:
        n = count(line) + 1
        if n > budget:  # one enormous turn: its start says what it is about
            line, n = line[: budget * 3], budget
        if parts[-1] and used + n > budget:
            parts.append([])
            used = 0
        parts[-1].append(line)
        used += n
    words = run.cfg.daily_words if level == "daily" else run.cfg.weekly_words
    summary = ""
    for part in parts:
        if not run.can_call():
            st.add("deferred")
            return None
        items = "\n".join(part)
        if level == "daily":
            earlier = prompts.DAILY_EARLIER.format(summary=summary) if summary else ""
            prompt = prompts.DAILY.format(day=f"{first:%A %d %B %Y}", words=words, earlier=earlier, items=items)
        else:
            last = first + timedelta(days=6)
            prompt = prompts.WEEKLY.format(week=tag, first=first.isoformat(), last=last.isoformat(), words=words, items=items)
        answer = run.ask(st, "summarise", prompt, prompts.SUMMARY_SCHEMA, f"{level}:{tag}", words * 2 + 64)
        if answer is None:
            return None
        summary = " ".join(answer["summary"].split())
    return summary or None


def _day_start(d: date) -> float:
    return datetime(d.year, d.month, d.day).astimezone().timestamp()
