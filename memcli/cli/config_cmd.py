"""memcli config show | path."""

from __future__ import annotations

import typer

from memcli.cli.common import JsonOpt

app = typer.Typer(rich_markup_mode=None, help="Show the effective settings and where memcli keeps things.", no_args_is_help=True)


@app.command()
def show(json_: JsonOpt = False) -> None:
    """Every setting's effective value and where it came from."""
    from memcli import api, ui

    items = api.settings()
    if json_:
        return ui.emit_json("config show", [{"key": f"{s}.{k}", "value": v, "source": src} for s, k, v, src in items])
    ui.table(["key", "value", "from"], [(f"{s}.{k}", repr(v) if isinstance(v, str) else v, src) for s, k, v, src in items])


@app.command()
def path(json_: JsonOpt = False) -> None:
    """Where the config file, data, models and logs live (MEMCLI_HOME moves them all)."""
    from memcli import api, ui

    pairs = api.locations()
    if json_:
        return ui.emit_json("config path", {k: str(v) for k, v in pairs})
    ui.kv(pairs)
