"""The Typer app: one small module per command group; ``main`` is the single place errors are shown."""

from __future__ import annotations

import errno
import os
import re
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from memcli import __version__
from memcli.cli import (
    chat,
    config_cmd,
    consolidate_cmd,
    ingest,
    lifecycle,
    mcp_cmd,
    memories,
    models_cmd,
    recall,
    review_cmd,
)

if TYPE_CHECKING:
    from memcli.errors import MemcliFailure

app = typer.Typer(
    rich_markup_mode=None,  # help texts name config keys like [store] url: not Rich markup
    name="memcli",
    help="A personal memory assistant for the terminal: remember, recall, forget. Fully offline.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals hold the user's memories
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"memcli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
    color: Annotated[str, typer.Option("--color", help="auto, always or never (NO_COLOR is respected).")] = "",
    store_url: Annotated[
        str,
        typer.Option(
            "--store-url", help="Use the Chroma server at this URL for this command ([store] url; token: MEMCLI_STORE_TOKEN)."
        ),
    ] = "",
) -> None:
    from memcli import ui
    from memcli.cli import common

    if store_url:
        common.store_url[:] = [store_url]

    if color:
        if color not in ("auto", "always", "never"):
            raise typer.BadParameter("must be auto, always or never", param_hint="--color")
        ui.set_color(color)


app.command()(chat.chat)
app.command()(memories.add)
app.command()(recall.recall)
app.command()(memories.show)
app.command("list")(memories.list_)
app.command()(memories.forget)
app.command()(memories.restore)
app.command()(memories.stats)
app.command()(ingest.ingest)
app.command()(ingest.reindex)
app.command()(memories.doctor)
app.command()(consolidate_cmd.consolidate)
app.command()(lifecycle.prune)
app.command()(lifecycle.history)
app.command()(lifecycle.export)
app.command("import")(lifecycle.import_)
app.command()(lifecycle.migrate)
app.command()(mcp_cmd.mcp)
app.add_typer(config_cmd.app, name="config")
app.add_typer(models_cmd.app, name="models")
app.add_typer(review_cmd.app, name="review")


def _command_name(argv: list[str]) -> str:
    words = [a for a in argv if not a.startswith("-")]
    if words and words[0] in ("config", "models", "review") and len(words) > 1:
        return f"{words[0]} {words[1]}"
    return words[0] if words else ""


def _check_utf8(argv: list[str]) -> None:
    """Python decodes argv bytes that are not UTF-8 (a Latin-1 terminal: `memcli add café`) into lone
    surrogates, which no store, tokenizer or output stream accepts: refuse them here, once (exit 2)."""
    from memcli.errors import usage_error

    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            try:  # show the bytes the terminal sent
                shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            except UnicodeEncodeError:
                shown = arg.encode("utf-8", "backslashreplace").decode("utf-8")
            raise usage_error(
                f"an argument is not UTF-8 text: '{shown}'",
                hint="Set your terminal to UTF-8, or convert the text (e.g. with iconv) and pipe it on stdin.",
            ) from None


_DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# How a full disk or a file-size limit reads when it comes through SQLite or Chroma's Rust bindings.
_DISK_WORDS = re.compile(
    r"database or disk is full|disk I/O error|no space left on device|file too large|disk quota exceeded|os error (27|28|122)\b",
    re.IGNORECASE,
)


def _disk_full(e: BaseException) -> MemcliFailure | None:
    """A write that failed for lack of space (ENOSPC; EFBIG under a file-size limit; EDQUOT) anywhere in
    ``e``'s chain, as the store failure it is (exit 6 with what to do) rather than an internal error."""
    from memcli.errors import ExitCode, MemcliFailure

    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        sqlite_name = str(getattr(cur, "sqlite_errorname", ""))
        if (
            (isinstance(cur, OSError) and cur.errno in _DISK_ERRNOS)
            or sqlite_name.startswith(("SQLITE_FULL", "SQLITE_IOERR"))
            or _DISK_WORDS.search(str(cur))
        ):
            return MemcliFailure(
                f"could not write the store: {cur}",
                hint="The disk may be full, or a file-size or quota limit was reached: free some disk space, then run "
                "the command again. What was committed is kept, and an unfinished write is completed at the next "
                "start (`memcli doctor` checks the store).",
                code=ExitCode.STORE,
            )
        cur = cur.__cause__ or cur.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every expected failure becomes a message, a hint and a documented exit code."""
    from memcli import ui
    from memcli.cli import common
    from memcli.errors import ExitCode, MemcliFailure

    argv = sys.argv[1:] if argv is None else argv
    os.umask(0o077)  # everything memcli writes is private: files 0600, directories 0700
    as_json = "--json" in argv
    command = _command_name(argv)
    code = 0
    try:
        _check_utf8(argv)
        rv = app(args=argv, prog_name="memcli", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except MemcliFailure as e:
        ui.error(e, as_json=as_json, command=command)
        code = int(e.code)
    except typer.Exit as e:
        code = int(getattr(e, "exit_code", 0))
    except typer.Abort:
        ui.error(MemcliFailure("interrupted", code=ExitCode.INTERRUPTED), as_json=as_json, command=command)
        code = int(ExitCode.INTERRUPTED)
    except typer.TyperException as e:  # usage errors (Typer's bundled Click): its own message, exit 2
        show = getattr(e, "show", None)
        if show is not None:
            show()
        code = int(getattr(e, "exit_code", ExitCode.USAGE))
    except KeyboardInterrupt:
        ui.error(
            MemcliFailure("interrupted; everything committed before Ctrl-C is kept", code=ExitCode.INTERRUPTED),
            as_json=as_json,
            command=command,
        )
        code = int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        code = 0  # `memcli list | head` is fine
    except Exception as e:  # a bug: say so without a traceback full of the user's data
        full = _disk_full(e)
        if full is not None:  # not a bug: the disk is full (or a size limit hit) under a write
            ui.error(full, as_json=as_json, command=command)
            return int(full.code)
        ui.error(
            MemcliFailure(
                f"internal error: {type(e).__name__}: {e}",
                hint="Please report this; rerun with MEMCLI_DEBUG=1 for a traceback.",
                code=ExitCode.INTERNAL,
            ),
            as_json=as_json,
            command=command,
        )
        if os.environ.get("MEMCLI_DEBUG"):
            raise
        code = int(ExitCode.INTERNAL)
    finally:
        common.close()
    return code


def run() -> None:
    sys.exit(main())
