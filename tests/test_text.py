"""Pure text functions: time expressions, chunking, Markdown parsing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from memcli.errors import MemcliFailure
from memcli.text.chunking import split_text
from memcli.text.markdown import date_from_path, parse
from memcli.text.timeexpr import parse_when

NOW = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("today", datetime(2026, 11, 24, tzinfo=UTC)),
        ("yesterday", datetime(2026, 11, 23, tzinfo=UTC)),
        ("3 days ago", NOW - timedelta(days=3)),
        ("two weeks ago", NOW - timedelta(weeks=2)),
        ("last week", datetime(2026, 11, 16, tzinfo=UTC)),
        ("last month", datetime(2026, 10, 1, tzinfo=UTC)),
        ("2024-03-01T14:30Z", datetime(2024, 3, 1, 14, 30, tzinfo=UTC)),
    ],
)
def test_parse_when(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


def test_parse_when_naive_is_local_and_aware() -> None:
    assert parse_when("2024-03-01").tzinfo is not None


@pytest.mark.parametrize("bad", ["", "someday", "2024-13-01", "3 fortnights ago"])
def test_parse_when_rejects_with_hint(bad: str) -> None:
    with pytest.raises(MemcliFailure) as e:
        parse_when(bad, NOW)
    assert "yesterday" in e.value.hint


def words(s: str) -> int:
    return len(s.split()) + 2


def test_split_text_respects_budget_and_keeps_everything() -> None:
    paras = [f"Sentence number {i} is here. Another one follows it." for i in range(60)]
    text = "\n\n".join(paras)
    chunks = split_text(text, 40, words)
    assert len(chunks) > 1
    assert all(words(c) <= 40 for c in chunks)
    assert " ".join(" ".join(chunks).split()) == " ".join(text.split())


def test_split_text_cuts_unbreakable_runs() -> None:
    chunks = split_text("x" * 5000, 64, len)
    assert all(len(c) <= 64 for c in chunks) and "".join(chunks) == "x" * 5000


def test_markdown_sections_front_matter_tags_and_date() -> None:
    text = "---\ntitle: Trip\ntags: [travel, 'hiking']\n---\n# Day one\nWe walked. #outdoors\n\n## Lunch\nSoup.\n```\n# not a heading #nottag\n```\n"
    doc = parse(text, "notes/2024-05-02.md")
    assert doc.title == "Trip"
    assert doc.tags == ("travel", "hiking", "outdoors")
    assert doc.when == date(2024, 5, 2)
    assert [s.heading_path for s in doc.sections] == [("Day one",), ("Day one", "Lunch")]
    assert "# not a heading" in doc.sections[1].text


def test_front_matter_date_wins_and_bad_yaml_stays_text() -> None:
    assert parse("---\ndate: 2023-01-05\n---\nx", "2024-05-02.md").when == date(2023, 1, 5)
    doc = parse("---\n: [unclosed\n---\nbody", "x.md")
    assert doc.when is None and "unclosed" in doc.sections[0].text


@pytest.mark.parametrize(
    ("path", "expected"),
    [("j/2024-03-01.md", date(2024, 3, 1)), ("j/2024/03/01.md", date(2024, 3, 1)), ("j/notes.md", None), ("2024-02-30.md", None)],
)
def test_date_from_path(path: str, expected: date | None) -> None:
    assert date_from_path(path) == expected
