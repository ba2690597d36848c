"""One line of text, cut to a width: how a memory is quoted in reports, examples and tables."""

from __future__ import annotations


def short(text: str, width: int = 60) -> str:
    """``text`` on one line (runs of whitespace become one space), at most ``width`` characters; a cut
    ends in "…" so the reader can tell."""
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"
