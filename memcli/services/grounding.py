"""Is an extracted fact supported by the user's own words? A check that does not trust the model.

A small model asked for facts returns valid JSON that may say anything ("I am a professional.",
repeated). Before a fact is stored it must pass, against the user's message:

* the message states something: questions, requests and instruction-like text are no source;
* every number and every name (a capitalised word) in the fact occurs in the message;
* most of its content words occur there too (stemmed; a few glue words that a third-person
  rewrite adds, like "named" or "has", are free), and it is close in meaning (embeddings);
* it does not flip a negation ("I don't drink coffee" never becomes "The user drinks coffee").

What fails is dropped and counted (``FactChange`` action "dropped", reason "ungrounded: ...";
``memcli doctor`` lists the drops).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memcli.services.fusion import stem
from memcli.text.intent import instruction_like, is_question, sentences, strip_chatter

# A fact needs this share of its content words in the message; with less (but some) the meaning must agree.
MIN_COVERAGE = 0.6
MIN_COVERAGE_WITH_MEANING = 0.3
MIN_SIMILARITY = 0.45
_GLUE_WORDS = (
    "user", "users", "user's", "they", "them", "their", "theirs", "themselves", "he", "she", "his", "her",
    "person", "someone", "others", "other", "name", "named", "called", "call", "is", "are", "was", "were",
    "be", "been", "being", "am", "has", "have", "had", "having", "do", "does", "did", "likes", "like", "loves",
    "love", "enjoys", "enjoy", "prefers", "prefer", "wants", "want", "owns", "own", "works", "work", "lives",
    "live", "currently", "now", "recently", "also", "still", "really", "very", "just", "new", "own", "one",
    "some", "about", "of", "to", "in", "on", "at", "for", "with", "by", "from", "year", "years", "old", "age",
    "aged", "based", "located", "lot", "lots", "thing", "things", "stuff", "guy", "man", "woman", "people",
    "over", "a", "an", "the", "and", "or", "but", "not", "that", "this", "these", "those", "it", "its", "as",
    "there", "here", "who", "which", "what", "when", "where",
)  # fmt: skip
_GLUE = frozenset(stem(w) for w in _GLUE_WORDS)
_NEGATION = re.compile(
    r"\b(?:not|no|never|none|nobody|nothing|neither|nor|without|no longer|anymore|any more)\b|n't\b", re.IGNORECASE
)
_NEGATIVE_WORDS = re.compile(
    r"\b(?:dislik\w*|hat(?:e|es|ed|ing)|avoid\w*|quit\w*|stopp?\w*|refus\w*|gave up|off)\b", re.IGNORECASE
)
_NUMBER = re.compile(r"\d+(?:[.:,]\d+)*")
_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
    )
}
_CAPITALISED = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-zA-Z'-]+")
_NOT_NAMES = frozenset({"I", "I'm", "I've", "I'd", "I'll", "User", "The", "They", "Their"})
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class Support:
    grounded: bool
    reason: str  # why not ("" when grounded)
    coverage: float  # share of the fact's content words found in the message
    similarity: float  # cosine between the fact and the message's statements (-1 when not computed)


def statement_sentences(message: str) -> list[str]:
    """The sentences of the message that state things (not questions, not bare greetings)."""
    return [s for s in sentences(message) if not is_question(s) and strip_chatter(s)]


def statements_of(message: str) -> str:
    """The part of the message that states things, as one text."""
    return " ".join(statement_sentences(message))


def could_state_facts(message: str) -> bool:
    """Could any fact drawn from ``message`` pass :func:`check`? (Not for questions, greetings and
    instruction-like text: asking a model to extract from those only costs time.)"""
    return bool(statements_of(message)) and not instruction_like(message)


def _numbers(text: str) -> set[str]:
    words = set(_WORD.findall(text.lower()))
    return {n.rstrip(".,") for n in _NUMBER.findall(text)} | {_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS}


def _stems(text: str) -> set[str]:
    return {stem(w) for w in _WORD.findall(text.lower())}


def content_stems(text: str) -> set[str]:
    from memcli.store import STOPWORDS

    words = _WORD.findall(text.lower())
    return {stem(w) for w in words if w not in STOPWORDS and not w.isdigit() and w not in _NUMBER_WORDS} - _GLUE


def check(fact: str, message: str, similarity: float | None = None) -> Support:
    """Does ``message`` (the user's words) support ``fact``? ``similarity``: cosine between the fact and
    the closest statement of the message (None skips the meaning test and requires more of its words)."""
    sim = -1.0 if similarity is None else similarity
    if instruction_like(message):
        return Support(False, "the message reads as instructions, not as something about the user", 0.0, sim)
    said = statements_of(message)
    if not said:
        return Support(False, "the message asks or greets; it states nothing", 0.0, sim)
    return supported_by(fact, said, similarity)


def supported_by(fact: str, said: str, similarity: float | None = None) -> Support:
    """The word-level half of :func:`check`: is ``fact`` supported by the text ``said`` (a user's
    statements, or the stored facts a merge combines)?"""
    sim = -1.0 if similarity is None else similarity
    body = _ISO_DATE.sub(" ", fact)  # a date the model resolved ("yesterday" -> 2026-03-01) is checked as `when`
    missing = _numbers(body) - _numbers(said)
    if missing:
        return Support(False, f"number not in the message: {', '.join(sorted(missing))}", 0.0, sim)
    said_low = said.lower()
    names = [n for n in _CAPITALISED.findall(body) if n not in _NOT_NAMES and n.lower() not in said_low]
    if names:
        return Support(False, f"name not in the message: {', '.join(names)}", 0.0, sim)
    words = content_stems(body)
    if not words:  # "The user is 67 years old.": its numbers and names (checked above) are all it says
        if _numbers(body) or _CAPITALISED.search(body.replace("The user", "the user")):
            return Support(True, "", 1.0, sim)
        return Support(False, "the fact says nothing specific", 0.0, sim)
    coverage = len(words & _stems(said)) / len(words)
    weak = coverage < MIN_COVERAGE_WITH_MEANING or similarity is None or similarity < MIN_SIMILARITY
    if coverage < MIN_COVERAGE and weak:  # a partial match must at least mean the same
        return Support(False, f"most of its words are not the user's ({coverage:.0%} are)", coverage, sim)
    if _NEGATION.search(body):
        if not _NEGATION.search(said):
            return Support(False, "it negates what the user said", coverage, sim)
    elif _negated_near(said, words) and not _NEGATIVE_WORDS.search(body):  # "dislikes" may render "don't like"
        return Support(False, "it drops a negation from the user's words", coverage, sim)
    return Support(True, "", coverage, sim)


def _negated_near(said: str, words: set[str]) -> bool:
    """Does a negation in the message govern one of the fact's words ("I don't drink coffee" for
    "drinks coffee")? Only the next two words of the same clause count: "lives in Lyon, not Paris"
    still supports "lives in Lyon", and an interjection ("no, the wedding is in Udaipur") governs nothing."""
    for m in _NEGATION.finditer(said):
        clause = re.split(r"[.,;:!?()-]", said[m.end() :], maxsplit=1)[0]
        following = _WORD.findall(clause.lower())[:2]
        if any(stem(w) in words for w in following):
            return True
    return False
