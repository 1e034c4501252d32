"""User-facing errors: one line naming the field and the reason, exit code 2, no traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console

# soft_wrap: an error is one line however narrow the terminal, so it can be grepped
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class UserError(Exception):
    """A mistake of the user's (bad file, bad value): printed without a traceback."""


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn known user mistakes into clean CLI errors; real bugs still show a traceback."""
    from star.genome.validate import InvalidGenome

    try:
        yield
    except InvalidGenome as exc:
        for problem in exc.problems:
            err_console.print(f"[bold red]error:[/] {problem}")
        raise typer.Exit(2) from None
    except (UserError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        fail(str(exc))


@contextmanager
def progress(first: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr naming the current step of a minute-long command (export, bench);
    yields a function that moves it to the next step. Silent when stderr is not a terminal, so
    scripts and ``--json`` output stay clean."""
    if not err_console.is_terminal:
        yield lambda _message: None
        return
    with err_console.status(first) as status:
        yield lambda message: status.update(message)
