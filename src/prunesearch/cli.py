"""Command-line interface: each command parses, calls one library function, renders.

Library errors (:class:`PrunesearchError`) become one ``error: ...`` line on stderr and exit
code 2; usage errors too. Anything else is a bug: exit code 1 with a traceback that shows no
local variables.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .errors import PrunesearchError

try:  # recent typer vendors click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import UsageError

app = typer.Typer(
    name="prunesearch",
    help="Channel pruning as architecture search: find the CNN that fits a FLOP budget.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary as the last line.")]
AllowImportOpt = Annotated[bool, typer.Option(
    "--allow-import", help="Import the model code a spec names ('pkg.module:callable').")]


def _user_errors(fn):
    """Turns a PrunesearchError into one ``error:`` line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PrunesearchError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _emit_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


@app.command()
@_user_errors
def show(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.json", help="Architecture spec.")],
    allow_import: AllowImportOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Table of a spec's per-group widths against the base model, with FLOPs and params."""
    from .report import spec_summary
    from .spec import ArchSpec

    summary = spec_summary(ArchSpec.load(spec_path, allow_import=allow_import))
    table = Table(title=f"{spec_path.name}: {summary['model']} {tuple(summary['input_shape'])}")
    for col in ("group", "base", "width", "keep"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for row in summary["groups"]:
        table.add_row(row["group"], str(row["base"]), str(row["width"]),
                      f"{row['keep_ratio']:.0%}")
    console.print(table)
    console.print(
        f"FLOPs {_human(summary['flops'])} of {_human(summary['base_flops'])} "
        f"({summary['flops_ratio']:.1%}, fvcore: 1 multiply-add = 1)   "
        f"params {_human(summary['params'])} of {_human(summary['base_params'])}"
    )
    if json_out:
        _emit_json(summary)


@app.command("models")
@_user_errors
def models_cmd(json_out: JsonOpt = False) -> None:
    """List the models of the zoo (and any registered ones)."""
    from .models import list_models

    names = list_models()
    for name in names:
        console.print(name)
    if json_out:
        _emit_json({"models": names})


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors become one ``error:`` line with exit code 2."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="prunesearch", standalone_mode=False)
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `prunesearch`: show the help
            typer.echo(command.get_help(exc.ctx) if exc.ctx else exc.format_message())
            sys.exit(0)
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(130)
    except PrunesearchError as exc:  # raised outside a command (should not happen)
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
