"""Entry point of the ``star`` CLI: one typer sub-app per concern, registered here.

Each ``star.cli.<name>`` module exposes ``register(app)``; heavy imports (torch) happen inside the
commands, so ``star --help`` stays fast.
"""

from __future__ import annotations

import importlib

import typer


def _no_flag_metavars() -> None:
    """typer 0.29 prints ``<bool>`` after every on/off flag in ``--help`` (``--json <bool>``),
    as if the flag took a value; flags take none, so their help shows no type."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: object) -> str | None:
        return None if self.is_flag else shown(self, ctx)  # type: ignore[arg-type]

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_no_flag_metavars()

app = typer.Typer(
    name="star",
    help="STAR lab: hardware-in-the-loop architecture search for small language models.\n\n"
         "Example: star search run --config studies/lfm2-vs-transformer.yaml --dry-run",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from star import __version__

        typer.echo(f"star-lab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    """STAR lab: hardware-in-the-loop architecture search for small language models."""

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
