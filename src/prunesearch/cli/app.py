"""Command-line interface: the typer app and its entry point.

Each command (:mod:`prunesearch.cli.commands`) parses, calls one library function and renders
(:mod:`prunesearch.cli.render`). Library errors (:class:`PrunesearchError`) become one
``error: ...`` line on stderr and exit code 2; usage errors too. Anything else is a bug: exit
code 1 with a traceback that shows no local variables.
"""

from __future__ import annotations

import sys

import typer

from prunesearch.cli.commands import COMMANDS
from prunesearch.cli.runtime import bare_allow_import
from prunesearch.compat import NoArgsIsHelpError, UsageError
from prunesearch.errors import PrunesearchError, keep_interrupts

__all__ = ["app", "main"]

app = typer.Typer(
    name="prunesearch",
    help="Channel pruning as architecture search: find the CNN that fits a FLOP budget.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
for _name, _command in COMMANDS.items():
    app.command(_name)(_command)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors become one ``error:`` line with exit code 2."""
    command = typer.main.get_command(app)
    keep_interrupts()  # a Ctrl-C inside a finalizer is not printed and lost
    argv = bare_allow_import(sys.argv[1:] if argv is None else list(argv))
    try:
        code = command.main(args=argv, prog_name="prunesearch", standalone_mode=False)
    except UsageError as exc:
        if isinstance(exc, NoArgsIsHelpError):  # bare `prunesearch`: show the help
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
