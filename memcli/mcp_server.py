"""`memcli mcp`: memcli as the memory of other tools, a Model Context Protocol server over stdio.

Desktop and coding assistants start it as a subprocess and call its tools: recall, remember, forget
(to the trash), list recent memories, read the profile, list spaces. It is a shell over the
documented API (``memcli.api.Memcli``), like the CLI, built on the official MCP SDK (``MCPServer``).

What it can do to the store is bounded here, not by the client's good behaviour: it never purges
(forget moves to the trash, which ``memcli restore`` undoes), ``read_only`` offers no tool that
writes, and ``space`` confines every tool to one space. While it serves, the SDK points the
process's stdout at stderr, so nothing but protocol reaches the client; logs go to stderr.

One ``Memcli`` serves every call, one call at a time: the SDK runs each tool in a worker thread,
and the store's SQLite connection and llama.cpp context must not be used by two threads at once.
"""

# No `from __future__ import annotations` here: the SDK reads the tools' parameter annotations (built
# at run time inside build(), with their descriptions) from the functions themselves.
import logging
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from memcli.api import Memcli, parse_kind, parse_time
from memcli.errors import MemcliFailure, usage_error

if TYPE_CHECKING:
    from memcli.records import Hit, Memory

ALL = "*"  # the space argument that means every space (when the server is not confined to one)
MAX_RESULTS = 50
log = logging.getLogger("memcli.mcp")
T = TypeVar("T")

INSTRUCTIONS = """memcli is the user's personal, local memory: their notes, journals, imported chats and facts
they asked to keep, on their own machine. Recall before answering anything that may depend on the
user's own life, plans, people, preferences or earlier conversations, and say so when nothing
relevant is found rather than guessing. Remember only what the user said or clearly wants kept, one
self-contained statement per memory; never store passwords or other secrets. Forgetting moves a
memory to the trash, where the user can restore it."""


def _memory(m: "Memory") -> dict[str, Any]:
    return {
        "id": m.id,
        "text": m.text,
        "kind": m.kind.value,
        "when": m.when.astimezone().isoformat(timespec="minutes"),
        "source": m.source,
        "tags": list(m.tags),
        "space": m.space,
    }


class MemoryTools:
    """The tools' behaviour, apart from the protocol (so each is one plain method)."""

    def __init__(self, mem: Memcli, *, space: str | None, read_only: bool) -> None:
        self.mem = mem
        self.space = space  # None: any space may be named
        self.read_only = read_only
        self._lock = threading.Lock()

    def _run(self, fn: Callable[[], T]) -> T:
        from mcp.server.mcpserver.exceptions import ToolError

        with self._lock:
            try:
                return fn()
            except MemcliFailure as e:  # an expected failure: what happened and what to do, for the model
                raise ToolError(f"{e.message}. {e.hint}" if e.hint else e.message) from None

    def _spaces(self, space: str | None, *, many: bool) -> list[str | None]:
        """The spaces a call covers: the confined one, the one named, every one (``*``), or the default."""
        from mcp.server.mcpserver.exceptions import ToolError

        if self.space is not None:
            if space not in (None, "", self.space):
                raise ToolError(f"this server is confined to the space {self.space!r} (memcli mcp --space {self.space})")
            return [self.space]
        if space == ALL:
            if not many:
                raise ToolError(f"name one space for this tool ({ALL!r} means every space only for recall and listing)")
            return list(self.mem.stats().spaces) or [None]
        return [space or None]

    def recall(self, query: str, limit: int, space: str | None, since: str | None, until: str | None) -> dict[str, Any]:
        def go() -> dict[str, Any]:
            start = parse_time(since) if since else None
            end = parse_time(until) if until else None
            hits: list[Hit] = []
            for sp in self._spaces(space, many=True):
                hits += self.mem.recall(query, k=limit, space=sp, since=start, until=end).hits
            hits.sort(key=lambda h: -h.score)
            found = [{**_memory(h.memory), "score": round(h.score, 4)} for h in hits[:limit]]
            return {"query": query, "memories": found, "note": "" if found else "nothing relevant is stored"}

        return self._run(go)

    def remember(self, text: str, tags: list[str], when: str | None, space: str | None) -> dict[str, Any]:
        def go() -> dict[str, Any]:
            (sp,) = self._spaces(space, many=False)
            result = self.mem.add(text, tags=tags, when=parse_time(when) if when else None, space=sp, source="mcp")
            return {
                "stored": [_memory(m) for m in result.added],
                "already_known": [_memory(m) for m in result.duplicates],  # the same text was remembered before
            }

        return self._run(go)

    def forget(self, memory_id: str, space: str | None) -> dict[str, Any]:
        def go() -> dict[str, Any]:
            (required,) = self._spaces(space, many=False)  # None: an id names its memory in any space
            m = self.mem.show(memory_id)
            if required is not None and m.space != required:
                raise usage_error(f"memory {memory_id!r} is in the space {m.space!r}, not {required!r}", hint="Check the id.")
            self.mem.forget([m.id])  # to the trash, never purged: `memcli restore ID` brings it back
            return {"trashed": _memory(m), "restore_with": f"memcli restore {m.id}"}

        return self._run(go)

    def recent(self, limit: int, kind: str | None, space: str | None) -> dict[str, Any]:
        def go() -> dict[str, Any]:
            kinds = [parse_kind(kind)] if kind else []
            found: list[Memory] = []
            for sp in self._spaces(space, many=True):
                found += self.mem.list(kinds=kinds, limit=limit, space=sp).memories
            found.sort(key=lambda m: m.when, reverse=True)
            return {"memories": [_memory(m) for m in found[:limit]]}

        return self._run(go)

    def profile(self, space: str | None) -> dict[str, Any]:
        def go() -> dict[str, Any]:
            (sp,) = self._spaces(space, many=False)
            p = self.mem.profile(space=sp)
            return {"space": p.space, "profile": p.text, "note": "" if p.text else "no profile yet"}

        return self._run(go)

    def spaces(self) -> dict[str, Any]:
        def go() -> dict[str, Any]:
            stats = self.mem.stats(space=self.space)
            counts = {self.space: stats.spaces.get(self.space, 0)} if self.space else stats.spaces
            return {"spaces": counts, "default": self.space or stats.space, "confined": self.space is not None}

        return self._run(go)


def build(mem: Memcli, *, space: str | None = None, read_only: bool = False) -> Any:
    """The MCP server (an ``mcp.server.mcpserver.MCPServer``) over ``mem``; ``run("stdio")`` serves it."""
    from mcp.server.mcpserver import MCPServer
    from mcp_types import ToolAnnotations
    from pydantic import Field

    from memcli import __version__

    tools = MemoryTools(mem, space=space, read_only=read_only)
    where = (
        f"Every tool works in the space {space!r} only."
        if space
        else f"`space` names a memory space (default: the user's default space); {ALL!r} means every space."
    )
    mode = " This server is read-only: it can recall and list, not remember or forget." if read_only else ""
    server: Any = MCPServer("memcli", instructions=INSTRUCTIONS + "\n\n" + where + mode, version=__version__, log_level="WARNING")
    Space = Annotated[str | None, Field(description=where)]
    Limit = Annotated[int, Field(ge=1, le=MAX_RESULTS, description=f"How many memories at most (1-{MAX_RESULTS}).")]
    When = Annotated[
        str | None, Field(description="A date or time in words: '2024-03-01', '2024-03-01T14:30', 'yesterday', '3 weeks ago'.")
    ]
    reads = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    def recall_memories(
        query: Annotated[str, Field(min_length=1, description="What to look for, in plain words; time phrases are understood.")],
        limit: Limit = 5,
        space: Space = None,
        since: When = None,
        until: When = None,
    ) -> dict[str, Any]:
        return tools.recall(query, limit, space, since, until)

    server.add_tool(
        recall_memories,
        description="Search the user's memory (notes, journals, imported chats, facts they asked to keep) for what is "
        "relevant to `query`, best first. Use it before answering anything that may depend on the user's own life, "
        "plans, people, preferences or earlier conversations. Time phrases in the query ('what did I do last summer') "
        "narrow it to that time; `since`/`until` do so explicitly. Each result has an `id` (for forget_memory), the "
        "text, when it happened and where it came from. No results means nothing relevant is stored: say so.",
        annotations=reads,
    )

    def list_recent_memories(
        limit: Limit = 10,
        kind: Annotated[
            str | None, Field(description="Only this kind: note, episode (a conversation turn or event), fact, summary, profile.")
        ] = None,
        space: Space = None,
    ) -> dict[str, Any]:
        return tools.recent(limit, kind, space)

    server.add_tool(
        list_recent_memories,
        description="The user's newest memories, newest first (by when they happened). Useful to see what the user has "
        "been doing or noting lately, or to find the id of something just remembered.",
        annotations=reads,
    )

    def read_profile(space: Space = None) -> dict[str, Any]:
        return tools.profile(space if space != ALL else None)

    server.add_tool(
        read_profile,
        description="The user's profile: a short text of stable facts and preferences about them (written by memcli's "
        "nightly consolidation; until then their most important current facts). Read it at the start of a "
        "conversation to personalise answers; it may be empty.",
        annotations=reads,
    )

    server.add_tool(
        tools.spaces,
        name="list_spaces",
        description="The user's memory spaces (separate memory sets such as 'work' and 'personal') with how many "
        "memories each holds, and which one is used when none is named.",
        annotations=reads,
    )
    if read_only:
        return server

    def remember(
        text: Annotated[
            str, Field(min_length=1, description="One self-contained statement: 'Ana's birthday is 12 May', not 'hers is then'.")
        ],
        tags: Annotated[list[str], Field(description="Short topic words, e.g. ['family', 'birthday'].")] = [],  # noqa: B006
        when: When = None,
        space: Space = None,
    ) -> dict[str, Any]:
        return tools.remember(text, tags, when, space)

    server.add_tool(
        remember,
        description="Store one new memory for the user: a fact, preference, decision, plan or event worth recalling "
        "later. Only what the user said or clearly wants kept; never passwords or other secrets. `when`: when it "
        "happened, if not now. Storing the same text twice keeps one memory.",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
    )

    def forget_memory(
        memory_id: Annotated[str, Field(min_length=4, description="The memory's id, from recall_memories or list_recent_memories.")],
        space: Space = None,
    ) -> dict[str, Any]:
        return tools.forget(memory_id, space)

    server.add_tool(
        forget_memory,
        description="Move one memory to the trash, when the user asks to forget it or it is wrong. Nothing is erased: "
        "the user can bring it back with `memcli restore ID`. Find the id with recall_memories first.",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False),
    )
    return server


def serve(*, space: str | None = None, read_only: bool = False, store_url: str | None = None) -> None:
    """Serve over stdin/stdout until the client closes the connection."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="memcli mcp: %(message)s")
    mem = Memcli(space=space, settings={("store", "url"): store_url} if store_url else None)
    mem.listen(on_notice=lambda message: log.warning("%s", message))
    try:
        if space is not None:
            mem.stats(space=space)  # a bad space name fails here, before serving, with its usual message
        server = build(mem, space=space, read_only=read_only)
        try:
            server.run("stdio")
        except BaseExceptionGroup as group:  # the SDK's task groups wrap what ended them
            _, rest = group.split(_client_gone)
            if rest is not None:
                raise rest from None
            log.warning("the client went away mid-session; stopping")
        except (BrokenPipeError, ConnectionError):
            log.warning("the client went away mid-session; stopping")
    finally:
        mem.close()  # every write that was applied is complete (the store's write protocol); nothing is half-done


def _client_gone(e: BaseException) -> bool:
    """A client that closed its end of the pipes while the server still had something to say."""
    import anyio

    return isinstance(e, (BrokenPipeError, ConnectionError, anyio.BrokenResourceError, anyio.ClosedResourceError))
