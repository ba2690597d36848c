"""What a chat message is, read without a model: does it need memories, does it ask about what the
assistant said, does it read as instructions to memcli rather than something about the user.

Pure functions over the text, so they are cheap enough to run before every reply and testable on
their own. They lean conservative in the direction that costs least: a message they cannot place
gets memories (``Need.FULL``), and any sign of instructions makes a message a non-source of facts.
"""

from __future__ import annotations

import re
from enum import Enum

from memcli.records import INSTRUCTION_LIKE

__all__ = [
    "Need",
    "asks_about_assistant",
    "flag_tags",
    "instruction_like",
    "is_question",
    "memory_need",
    "sentences",
    "strip_chatter",
]


class Need(Enum):
    NONE = "none"  # greetings, thanks, small talk: no memories in the prompt
    LIGHT = "light"  # a statement: a few closely related memories at most
    FULL = "full"  # a question or request: fill the memory budget


_CHATTER = (
    r"h(?:i|ello|ey|owdy|iya)(?: there)?|yo|good (?:morning|afternoon|evening|night|day)|morning|evening"
    r"|thanks?(?: you)?(?: (?:so|very) much)?(?: a lot)?|thx|ty|cheers|much appreciated|appreciate it"
    r"|ok(?:ay)?|k|cool|great|nice|awesome|perfect|wonderful|lovely|sweet|neat|wow|oh|ah|hmm+|huh|lol|haha+|heh|lmao"
    r"|yes|yeah|yep|yup|no|nope|nah|sure|right|fine|alright|indeed|exactly|true|fair enough|of course|got it"
    r"|sounds good|makes sense|good to know|no worries|no problem|bye|goodbye|see (?:you|ya)(?: later| soon| tomorrow)?"
    r"|good ?night|take care|have a good (?:one|day|night|evening|weekend)|you too|same to you|welcome|please"
    r"|that(?:'s| is| was) (?:great|nice|cool|helpful|funny|interesting|good|fine|ok|okay|all|it)|this (?:helps|helped)"
    r"|that helps|that helped|very helpful|good (?:one|answer|point)|well done|never ?mind|nvm|whatever"
)
_CHATTER_RE = re.compile(rf"^(?:(?:{_CHATTER})\b[\s,.!~:;)(-]*)+", re.IGNORECASE)
_TRAILING_CHATTER = re.compile(
    r"(?:[\s,.!~:;)(-]+(?:thanks?(?: you)?|thx|ty|cheers|lol|haha+|please|:\)|:d))+[\s,.!?~:;)(-]*$", re.IGNORECASE
)
_SMALL_TALK = re.compile(
    r"^(?:how are (?:you|u|things)(?: doing| today)?|how(?:'s| is) (?:it going|your day|everything|life)|what'?s up|sup|wassup"
    r"|how have you been|who are you|what are you|what is your name|what'?s your name|are you (?:there|a bot|real|an ai)"
    r"|what can you do|(?:nice|lovely|beautiful|great|awful|terrible) (?:weather|day)(?: today)?(?: huh| eh| isn'?t it)?|(?:it'?s|what a) (?:nice|lovely|beautiful|rainy|cold|hot) (?:day|weather)"
    r"|tell me a joke|you(?:'re| are) (?:funny|great|smart|helpful|the best)|i(?:'m| am) (?:fine|good|ok|okay|great|well|back)"
    r"|me too|same here|i agree|i see|i know|i guess|i think so|i don'?t know|no idea|just saying|just checking)"
    r"(?: (?:today|now|then|too|though|anyway|lol|haha))?[\s.!?,:;)(~-]*$",  # the whole sentence: "I know Python" is not small talk
    re.IGNORECASE,
)
_WH = r"(?:what|when|where|who|whom|whose|which|why|how)(?:'?s|'re|'d)?"
_AUX = r"(?:do|does|did|is|are|was|were|am|can|could|will|would|should|shall|have|has|had|may|might)"
_QUESTION_START = re.compile(rf"^(?:{_WH}|{_AUX})\b", re.IGNORECASE)
_REQUEST = re.compile(
    r"\b(?:remind me|tell me|show me|help me|give me|suggest|recommend|remember (?:when|what|where|who|how)|recall|"
    r"(?:any|some) (?:\w+ ){0,2}(?:ideas?|tips|suggestions|advice|recommendations)|ideas? for|what about|do you (?:know|remember)|look up|list)\b",
    re.IGNORECASE,
)
# A sentence ends at . ! ? followed by a space or the end, or at a line break ("4.2%" and "e.g." stay whole).
_SENTENCE = re.compile(r"(?:[^.!?\n]|[.!?](?=[^\s.!?]))+(?:[.!?]+|$)")
_ABOUT_ASSISTANT = re.compile(
    r"\byou\b(?:\W+\w+){0,3}?\W+(?:said|told|suggested|recommended|mentioned|answered|replied|promised|wrote|advised|"
    r"proposed|gave|say|tell|suggest|recommend|mention)\b|\byour (?:answer|reply|advice|suggestion|recommendation)s?\b",
    re.IGNORECASE,
)
_ADDRESSEE = r"(?:assistant|ai|chatbot|bot|model|llm|memcli|system)"
_INSTRUCTIONS = re.compile(
    "|".join(
        [
            # overriding what the assistant was told
            r"\b(?:ignore|disregard|forget|override|bypass)\b.{0,40}\b(?:instructions?|rules|prompts?|guidelines|everything (?:above|before)"
            r"|previous (?:instructions?|rules|prompts?|messages?|directions|guidelines|context))",
            r"\bsystem prompt\b|\bsystem override\b|\byou are now\b|\bfrom now on,? you\b|\bpretend (?:to be|you)\b|\bjailbreak"
            r"|\bdeveloper mode\b|\bnew rules?\b|\bwithout (?:checking|verifying|asking)\b",
            r"\b(?:you (?:will |must |should )?)?act as (?:if\b|the user's\b|an? (?:ai|assistant|chatbot|bot|unrestricted|unfiltered|jailbroken)\b)",
            r"\b(?:your|the following|here are(?: your)?) new instructions\b|\[/?(?:inst|system)\]",
            # speaking to the assistant inside a note: "... 7pm. Assistant: ...", "Note to the AI:", "hey AI, ..."
            # (not at the start: a stored chat turn reads "assistant: ...")
            rf"[.!?\]\n]\s*{_ADDRESSEE}\b\s*[:,]\s*(?!\s*$)",
            rf"\b(?:note|memo|message|instructions?|reminder) (?:to|for) (?:the |any |my )?{_ADDRESSEE}\b|\[{_ADDRESSEE} instructions?\]",
            rf"\b{_ADDRESSEE}\b,?\s+(?:please\s+)?(?:forget|ignore|store|save|delete|erase|tell|say|repeat|always|from now on)\b",
            rf"\b{_ADDRESSEE}\b[^.\n]{{0,30}}\b(?:reading|processing|parsing) this\b",
            # planting facts, asking for everything, destroying memories
            r"\b(?:store|save|record|remember|memori[sz]e|add|write|keep|note)\b.{0,30}\bas (?:a |an |the |my )?(?:\w+(?:'s)? )?(?:fact|memory|truth|history)\b",
            r"\b(?:update|change|edit) (?:your|the) memory\b|\bstore it permanently\b|\bremember that the user\b",
            r"\bwhenever (?:someone|anyone|anybody|people) asks?\b|\btell (?:whoever|anyone|anybody|everyone) (?:who )?asks?\b",
            r"\b(?:print|reveal|dump|list|show|output|leak|repeat|exfiltrate)\b.{0,30}\b(?:all|every|everything|other|your)\b.{0,20}"
            r"\b(?:memor(?:y|ies)|facts?|notes?|data|instructions|secrets?|prompt|details|codes?)\b",
            r"\b(?:everything|all) you (?:know|have|remember) about\b|\bin (?:your|every|each) (?:next )?(?:answer|reply|response)s?\b"
            r"|\bbefore (?:you )?answer(?:ing)?\b|\bat the start of every\b",
            r"\b(?:delete|erase|wipe|remove|forget|clear)\b.{0,20}\b(?:all|every|everything)\b.{0,20}\b(?:memor(?:y|ies)|notes?|facts?|data|records?)\b"
            r"|\b(?:wipe|erase|clear|delete|reset) (?:your |the |all )?memor(?:y|ies)\b|\bforget everything\b",
            r"\b(?:admin(?:istrator)?|root) (?:access|rights|privileges|mode)\b",
            # chat-template and prompt-format markers: a note that fakes a turn or the end of the notes
            r"<\|(?:im_start|im_end|endoftext|eot_id|start_header_id|end_header_id|system|user|assistant|end)\|>"
            r"|<(?:start|end)_of_turn>|<</?SYS>>|\[\s*(?:end of (?:the )?notes|notes from memory)\b|^#{2,} (?:instruction|response|system)\b"
            r"|\n\s*(?:user|assistant|system)\s*:",
            # terminal control: ESC and the other C0/C1 controls (tab and line feed are text; a carriage
            # return only when it does not end a line: alone it moves back and overwrites)
            r"\\(?:x1b|u001b|033|e)\[|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)|\bESC\[",
        ]
    ),
    re.IGNORECASE | re.MULTILINE,
)


# Third-person claims about "the user": people speak of themselves in the first person, so in a message
# or a note this is a planted "fact"; in memcli's own facts and summaries it is the house style.
_ABOUT_THE_USER = re.compile(r"\bthe user(?:'s (?:\w+ ){0,2}(?:is|are|was|were)| (?:is|has|wants|said|must|should|owns))\b", re.IGNORECASE)


def sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped (a line break ends one too)."""
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip(" .!?")]


def strip_chatter(sentence: str) -> str:
    """The sentence without leading greetings, thanks and acknowledgements ("Hi! Thanks, I ..." -> "I ...")."""
    return _CHATTER_RE.sub("", sentence.strip()).strip()


def is_question(sentence: str) -> bool:
    s = strip_chatter(sentence)
    return s.endswith("?") or bool(_QUESTION_START.match(s))


def _small_talk(sentence: str) -> bool:
    s = sentence.strip()
    return bool(_SMALL_TALK.match(s) or _SMALL_TALK.match(_TRAILING_CHATTER.sub("", s)))


def memory_need(message: str) -> Need:
    """How much memory the reply to ``message`` needs (the SCM paper's memory controller, as rules)."""
    parts = []
    for s in sentences(message):
        rest = strip_chatter(s)  # "Hi! Thanks, I ..." -> "I ..."
        if not _small_talk(s) and rest.strip(" .!?,") and not _small_talk(rest):
            parts.append(rest)
    if not parts:
        return Need.NONE
    if any(is_question(p) or _REQUEST.search(p) for p in parts):
        return Need.FULL
    return Need.LIGHT


def asks_about_assistant(message: str) -> bool:
    """Does the message ask what the assistant itself said ("what did you tell me about ...")? Only then
    may the assistant's earlier replies be shown as memories."""
    return bool(_ABOUT_ASSISTANT.search(message))


def instruction_like(text: str) -> bool:
    """Does the text read as instructions to the assistant or its memory (prompt injection, planted
    third-person "facts", terminal escapes)? Such text is data to quote, never a source of facts."""
    return bool(_INSTRUCTIONS.search(text) or _ABOUT_THE_USER.search(text))


def flag_tags(text: str, tags: tuple[str, ...], *, third_person: bool = False) -> tuple[str, ...]:
    """The tags a memory of ``text`` is written with: ``tags``, plus INSTRUCTION_LIKE when the text
    reads as instructions (computed from the text like its hash, so every writer flags alike).
    ``third_person``: memcli's own style ("The user ..."; facts, summaries, the profile), where a claim
    about the user is no sign of anything."""
    found = _INSTRUCTIONS.search(text) or (not third_person and _ABOUT_THE_USER.search(text))
    if INSTRUCTION_LIKE in tags or not found:
        return tags
    return (*tags, INSTRUCTION_LIKE)
