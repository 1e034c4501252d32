"""``star report RUN -o report.html``: a run's study report as one self-contained HTML file.

The file carries its CSS and SVG inline and loads nothing over a network, so it can be mailed,
archived next to the run's database, or opened on a machine with no access to the lab.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from star.cli.errors import fail
from star.cli.search import ConfigOpt, RunArg, _open_db, _settings


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    run: RunArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="the HTML file to write")],
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write a run's report: frontier vs baselines, layer patterns, context scaling, staging,
    ties and the provenance of every figure (one HTML file, no network needed).

    Example: star report s24-run -o report.html
    """
    from star.db.errors import NotFoundError
    from star.report.build import build_report
    from star.report.html import render_document
    from star.search.rundata import NotASearchRun, load_run

    if output.is_dir():
        fail(f"--output: {output} is a directory")
    if output.exists() and not force:
        fail(f"--output: {output} exists (--force overwrites it)")
    db = _open_db(_settings(config))
    try:
        with db.session_scope(readonly=True) as s:
            data = load_run(s, run)
    except NotFoundError as exc:
        fail(f"RUN: {exc}")
    except NotASearchRun as exc:
        fail(f"RUN: {exc}")
    finally:
        db.dispose()
    built = build_report(data)
    document = render_document(built)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    partial.write_text(document, encoding="utf-8")
    os.replace(partial, output)  # a reader never sees half a report
    typer.echo(f"wrote {output} ({len(document.encode()) // 1024} KiB): run {built.run}, "
               f"{len(built.front)} on the frontier, {len(built.baselines)} baseline(s), "
               f"{len(built.provenance)} measurements")
