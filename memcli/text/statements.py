"""Facts from what the user says about themselves, without a model.

Small local models (100M-500M parameters) either extract nothing or invent facts ("I am a
professional."); what they cannot be trusted with, a few rules do reliably: a declarative sentence
in which the user speaks about themselves ("my dog is called Pickle", "I just started at Halden
Robotics") is a fact, turned into the third person word by word. Every word of the result comes
from the user's sentence, so it is grounded by construction. Questions, requests, small talk and
instruction-like text give nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memcli.text.intent import instruction_like, is_question, sentences, strip_chatter

__all__ = ["Statement", "first_person_statements", "third_person"]


@dataclass(frozen=True)
class Statement:
    text: str  # third person: "The user's dog is called Pickle."
    kind: str  # fact, preference or event (the extraction schema's types)
    source: str  # the user's sentence it came from


# The speaker as subject or owner: "tastes like soap to me" or "she'd kill me" say nothing about the user.
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|im|i've|i'd|i'll|my|mine|we|we're|we've|our|ours)\b", re.IGNORECASE)
_SPECIFIC = re.compile(r"\d|(?<!^)(?<![.!?]\s)\b[A-Z][a-z]")
_OPENERS = re.compile(
    r"^(?:(?:well|so|oh|also|anyway|anyways|btw|by the way|fyi|just so you know|actually|and|but|plus|ps|p\.s\.|"
    r"sorry|oops|wait|no|correction|scratch that|my bad|i mean|to be clear|"
    r"oh and|quick update|update|fun fact|random fact|for the record|just fyi)\b[\s,:;-]*)+",
    re.IGNORECASE,
)
_NOT_A_FACT = re.compile(
    r"^(?:i (?:think|guess|suppose|mean|see|agree|know|hope|wonder|wish|was wondering|bet|feel like|'?m (?:not sure|sure|glad|sorry|"
    r"happy to|just|thinking|wondering|curious|bored|tired|fine|good|ok|okay|back|here|done|kidding|joking))"
    r"|i(?:'d| would) (?:like|love) (?:to know|you to|some|a|an|help)|let me|let's|can you|could you|would you|will you|please)\b",
    re.IGNORECASE,
)
_WANTS_SOMETHING = re.compile(r"\b(?:can you|could you|would you|please|help me|tell me|remind me|do you)\b", re.IGNORECASE)
_ADVERBS = frozenset(
    ["just", "also", "still", "really", "usually", "always", "never", "often", "sometimes", "recently", "finally", "actually", "absolutely", "totally", "definitely", "truly", "mostly", "generally", "normally", "typically", "rarely", "seldom", "already", "currently", "now", "even", "only"]
)
_KEEP_VERB = frozenset(
    ["can", "can't", "cannot", "could", "couldn't", "will", "won't", "would", "wouldn't", "should", "shouldn't", "shall", "may", "might", "must", "did", "didn't", "was", "wasn't", "had", "hadn't", "got", "went", "made", "took", "saw", "ran", "met", "bought", "left", "came", "began", "became", "felt", "found", "gave", "kept", "lost", "paid", "sold", "sent", "spent", "thought", "told", "wrote", "broke", "chose", "drove", "ate", "fell", "flew", "forgot", "grew", "heard", "hit", "hurt", "knew", "led", "lent", "read", "rode", "rang", "sang", "sat", "slept", "spoke", "stood", "swam", "taught", "threw", "understood", "woke", "won", "wore", "used"]
)
_IRREGULAR = {"am": "is", "have": "has", "do": "does", "don't": "doesn't", "go": "goes", "'m": "is", "'ve": "has"}
_PRONOUNS = {
    "i'm": "the user is", "im": "the user is", "i've": "the user has", "i'd": "the user would", "i'll": "the user will",
    "my": "the user's", "mine": "the user's", "me": "the user", "myself": "themselves",
    "we're": "the user and others are", "we've": "the user and others have", "we'd": "the user and others would",
    "we'll": "the user and others will", "we": "the user and others", "our": "the user's", "ours": "the user's",
    "us": "the user and others",
}  # fmt: skip
_LATER = {"my": "their", "mine": "theirs", "me": "them", "myself": "themselves"}
_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|[^A-Za-z\s]+|\s+")
_PREFERENCE = re.compile(
    r"\b(?:like|likes|love|loves|enjoy|enjoys|prefer|prefers|hate|hates|dislike|dislikes|can't stand|cannot stand|favou?rite|"
    r"fan of|into|allergic|avoid|don't eat|don't drink|can't eat|rather)\b",
    re.IGNORECASE,
)
_TIME = re.compile(
    r"\b(?:yesterday|today|tonight|tomorrow|last|next|this (?:week|weekend|month|year|morning|evening)|ago|on (?:mon|tue|wed|thu|fri|sat|sun)"
    r"|january|february|march|april|june|july|august|september|october|november|december|\d{1,2}(?:st|nd|rd|th)|\d{4}-\d{2}-\d{2}"
    r"|in \d{4}|since|until|recently|soon|weekend)\b",
    re.IGNORECASE,
)


def _conjugate(verb: str) -> str:
    low = verb.lower()
    if low in _IRREGULAR:
        return _IRREGULAR[low]
    if low in _KEEP_VERB or (low.endswith("ed") and not low.endswith("eed")) or low.endswith("n't") or not low.isalpha():
        return verb
    if low.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if low.endswith("y") and len(low) > 1 and low[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def third_person(sentence: str) -> str:
    """``sentence`` with the speaker as "the user": pronouns replaced, the verb after "I" agreed."""
    tokens = _TOKEN.findall(sentence)
    out: list[str] = []
    conjugate_next = named = False
    for tok in tokens:
        low = tok.lower()
        if tok.isspace() or not tok[0].isalpha():
            out.append(tok)
            continue
        if conjugate_next:
            if low in _ADVERBS or (low.endswith("ly") and len(low) > 4):
                out.append(tok)
                continue
            out.append(_conjugate(tok))
            conjugate_next = False
            continue
        if low == "i":
            out.append("the user")
            conjugate_next = named = True
        elif named and low in _LATER:  # "the user ran their first 10k", not "the user ran the user's"
            out.append(_LATER[low])
        elif low in _PRONOUNS:
            out.append(_PRONOUNS[low])
            named = named or (low not in ("we", "us", "our", "ours") and not low.startswith("we"))
        else:
            out.append(tok)
    text = "".join(out).strip()
    text = re.sub(r"\bthe user am\b", "the user is", text)
    return text[:1].upper() + text[1:]


def first_person_statements(message: str) -> list[Statement]:
    """The facts a message states about its author, in the third person (at most 8)."""
    if instruction_like(message):
        return []
    out: list[Statement] = []
    parts = sentences(message)
    # Beside a question, a remark is usually its context ("I keep forgetting", "I need it for the
    # pharmacy"): only a specific one (a name, a number) is kept.
    asks = any(is_question(p) or _WANTS_SOMETHING.search(p) for p in parts)
    for raw in parts:
        s = _OPENERS.sub("", strip_chatter(raw)).strip()
        if not s or is_question(s) or _WANTS_SOMETHING.search(s) or _NOT_A_FACT.match(s):
            continue
        if asks and not _SPECIFIC.search(s):
            continue
        if not _FIRST_PERSON.search(s) or len(re.findall(r"[A-Za-z]+", s)) < 3:
            continue
        text = third_person(s.rstrip(" !.,;:") + ".")
        kind = "preference" if _PREFERENCE.search(s) else "event" if _TIME.search(s) else "fact"
        out.append(Statement(text, kind, raw.strip()))
    return out[:8]
