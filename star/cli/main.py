"""Entry point of the ``star`` CLI: one typer sub-app per concern, registered here.

Each ``star.cli.<name>`` module exposes ``register(app)``; heavy imports (torch) happen inside the
commands, so ``star --help`` stays fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="star",
    help="STAR lab: hardware-in-the-loop architecture search for small language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Modules that contribute commands. Add one line per new module.
_COMMAND_MODULES = (
    "star.cli.genome",
    "star.cli.runtime",
    "star.cli.bench",
    "star.cli.export",
    "star.cli.lab",
    "star.cli.proxy",
    "star.cli.search",
    "star.cli.winner",
    "star.cli.report",
)


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_all()


def main() -> None:
    app()
