"""Wikilinks between ingested notes → ``wikilink`` links between their memories.

Resolved after every file of the run is written, so a link to a note ingested later in the same run
still lands. The chunk holding ``[[Note]]`` links to Note's first chunk (or, for ``[[Note#Heading]]``,
to the first chunk under that heading). Links are recorded once (the store keeps one link per
source, target and kind), so ingesting again adds nothing; when a chunk is replaced its links go
with it and are drawn again from the new chunk. Every run re-resolves the links of the notes it
sees, unchanged ones included, so a link whose target arrives in a later run lands then.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

from memcli.context import Context
from memcli.importers import vault
from memcli.records import Memory
from memcli.services.ingest_plan import VaultNote

KIND = "wikilink"


def _names(note: VaultNote) -> list[str]:
    names = [note.path.stem]
    if note.root is not None:
        with contextlib.suppress(ValueError):  # a file named outside the walked directory
            names.append(str(note.path.relative_to(note.root).with_suffix("")))
    return names + list(note.aliases)


def resolve(ctx: Context, space: str, notes: Sequence[VaultNote]) -> int:
    """Link the memories of ``notes`` that hold wikilinks to the notes they name. Returns how many
    links were new."""
    catalog = ctx.store.catalog
    index: dict[str, str] = {}  # a note's name (vault.key) → its source
    # Shallow paths first: two notes of one name in different folders resolve to the shallower, as
    # Obsidian does when a link gives no path.
    for note in sorted(notes, key=lambda n: (len(n.path.parts), str(n.path))):
        for name in _names(note):
            index.setdefault(vault.key(name), note.source)
    for source in catalog.source_names(space):  # notes ingested before, outside this run's paths
        if source.startswith("file:") and Path(source).suffix.lower() in (".md", ".markdown"):
            index.setdefault(vault.key(Path(source.removeprefix("file:")).stem), source)

    targets: dict[str, list[Memory]] = {}

    def memories_of(source: str) -> list[Memory]:
        if source not in targets:
            targets[source] = [m for m in catalog.by_source_prefix(source) if m.state == "active" and m.space == space]
        return targets[source]

    rows: list[tuple[str, str, str]] = []
    for note in notes:
        if not note.has_links:
            continue
        for m in memories_of(note.source):
            found = vault.links(m.text)
            have = {(s, d, k) for s, k, d in catalog.links(m.id)} if found else set()
            for link in found:
                target = index.get(vault.key(link.target))
                if target is None or target == note.source:
                    continue  # a note not (yet) ingested, or a link within the note
                dst = _chunk_for(memories_of(target), link.heading)
                if dst is not None and (m.id, dst.id, KIND) not in have:  # a run that changed nothing writes nothing
                    rows.append((m.id, dst.id, KIND))
    return ctx.store.link_all(rows) if rows else 0


def _chunk_for(memories: list[Memory], heading: str | None) -> Memory | None:
    if not memories:
        return None
    if heading:
        wanted = heading.casefold()
        for m in memories:  # keys hold the heading path (memcli.services.ingest_plan.plan_document)
            if wanted in m.keys.casefold():
                return m
    return memories[0]
