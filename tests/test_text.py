"""Pure text functions: chunking, Markdown parsing (time expressions: test_timequery.py, test_time_flags.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from memcli.text.chunking import split_text
from memcli.text.markdown import date_from_path, parse

NOW = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)


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
