"""``star genome from-candidate``: a run's candidate (or baseline) as a genome file to take away.

Example::

    star genome from-candidate s24-run 42 -o winner.yaml
    star export winner.yaml --format hf -o winner-hf/     # then into a full training pipeline
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from star.cli.errors import fail


def register(app: typer.Typer) -> None:
    from star.cli.genome import genome_app

    genome_app.command("from-candidate")(from_candidate)


def from_candidate(
    run: Annotated[str, typer.Argument(help="run name (or id)")],
    candidate: Annotated[str, typer.Argument(
        help="candidate id, 8+ hex digits of its genome id, or a baseline label")],
    out: Annotated[
        Path | None, typer.Option("--output", "-o", "--out", help="write YAML here")
    ] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="lab_config.yaml (default: $STAR_CONFIG)")] = None,
) -> None:
    """Write a candidate's genome as YAML, headed by where it came from and its figures.

    Example: star genome from-candidate s24-run 42 -o winner.yaml
    """
    from star.cli.search import _open_db, _settings
    from star.db.errors import NotFoundError
    from star.search.rundata import NotASearchRun, evaluate_run, load_run
    from star.search.winner import CandidateNotFound, find_candidate, winner_yaml

    db = _open_db(_settings(config))
    try:
        with db.session_scope(readonly=True) as s:
            data = load_run(s, run)
    except (NotFoundError, NotASearchRun) as exc:
        fail(f"RUN: {exc}")
    try:
        gid = find_candidate(data, candidate)
    except CandidateNotFound as exc:
        fail(str(exc))
    text = winner_yaml(data, gid, evaluate_run(data, only=[gid])[gid])
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    typer.echo(f"wrote {out} (genome {gid[:16]})")
