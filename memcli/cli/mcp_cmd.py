"""memcli mcp: serve memory to desktop and coding assistants (the Model Context Protocol, over stdio)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def mcp(
    space: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--space", "-s", help="Confine every tool to this space (default: any space may be named)."),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Offer only tools that read: recall, list, profile (no remember, no forget).")
    ] = False,
) -> None:
    """Serve memcli to desktop and coding assistants over the Model Context Protocol (stdio): recall,
    remember, forget (to the trash only; never purge), recent memories and the profile. Started by the
    assistant, not by hand: see README, "memcli as memory for other tools"."""
    from memcli.cli import common
    from memcli.mcp_server import serve

    serve(space=space, read_only=read_only, store_url=common.store_url[0] if common.store_url else None)
