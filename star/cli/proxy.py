"""``star proxy``: train a genome's proxy-scale model on MAD-style tasks and real text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from star.cli.errors import UserError, fail, user_errors

proxy_app = typer.Typer(
    help="Proxy quality: brief training on synthetic tasks and real text.", no_args_is_help=True
)
console = Console(highlight=False, width=140)


def register(app: typer.Typer) -> None:
    app.add_typer(proxy_app, name="proxy")


def _load_config(path: Path | None, overrides: dict[str, Any]) -> Any:
    """The ``proxy:`` section of ``path`` (lab_config.yaml) with CLI overrides on top."""
    import yaml
    from pydantic import ValidationError

    from star.proxy import ProxyConfig

    base: dict[str, Any] = {}
    if path is not None:
        doc = yaml.safe_load(path.read_text()) or {}
        section = doc.get("proxy", {}) if isinstance(doc, dict) else {}
        if not isinstance(section, dict):
            raise UserError(f"{path}: the proxy section must be a mapping")
        base = dict(section)
    text = dict(base.get("text") or {})
    for key in ("corpus", "max_bytes"):
        value = overrides.pop(f"text_{key}", None)
        if value is not None:
            text[key] = value
    if text:
        base["text"] = text
    base.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ProxyConfig.model_validate(base)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise UserError(f"proxy.{field}: {err['msg']}") from None


@proxy_app.command()
def train(
    genome: Annotated[
        Path, typer.Argument(help="genome YAML file (deployment scale)", show_default=False)
    ],
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            "-t",
            help="component to train (repeatable): in_context_recall, fuzzy_recall, "
            "noisy_recall, selective_copying, compression, memorization, text; default all",
        ),
    ] = None,
    steps: Annotated[int | None, typer.Option(help="optimizer steps per component", min=1)] = None,
    seed: Annotated[int, typer.Option(help="training seed (init and batch order)")] = 0,
    scale: Annotated[float | None, typer.Option(help="task size factor (0, 1]")] = None,
    model_scale: Annotated[
        str | None,
        typer.Option("--model-scale", help="proxy width preset: tiny (d=64) or proxy (d=128)"),
    ] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1)] = None,
    lr: Annotated[float | None, typer.Option(help="peak learning rate")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N")] = None,
    wall_time: Annotated[
        float | None,
        typer.Option("--wall-time", help="wall-time budget in seconds for the whole run"),
    ] = None,
    text: Annotated[
        Path | None,
        typer.Option(
            "--text",
            help="text corpus: a file, JSONL (text field) or directory; "
            "default: the Python standard library",
        ),
    ] = None,
    text_bytes: Annotated[
        int | None, typer.Option("--text-bytes", help="corpus bytes read")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="lab_config.yaml whose proxy: section is the base config"),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="CPU preset (scale 0.1, batch 32, tiny width) under the options"
        ),
    ] = False,
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights", help="save the trained state_dict (text model, else the first task)"
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Train GENOME's proxy-scale model on each component and print its quality metrics.

    Example: star proxy train genomes/lfm2-350m.yaml --json
    """
    from star.genome import load_genome

    with user_errors():
        overrides: dict[str, Any] = {
            "tasks": tuple(task) if task else None,
            "steps": steps,
            "scale": scale,
            "model_scale": model_scale,
            "batch_size": batch_size,
            "lr": lr,
            "device": device,
            "wall_time_s": wall_time,
            "text_corpus": str(text) if text else None,
            "text_max_bytes": text_bytes,
        }
        if quick:
            from star.proxy import ProxyConfig

            preset = ProxyConfig.quick().model_dump(exclude_defaults=True)
            for key, value in preset.items():
                if overrides.get(key) is None:
                    overrides[key] = value
        cfg = _load_config(config, overrides)
        spec = load_genome(genome).to_spec()
        from star.proxy.train import ProxyConfigError, proxy_spec, train_proxy

        small = proxy_spec(spec, cfg)
        try:
            result = train_proxy(small, cfg, seed=seed, name=genome.stem, weights_path=weights)
        except ProxyConfigError as exc:
            raise UserError(str(exc)) from None
    if json_out:
        print(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        _print(result)
    if result.error:
        if not json_out:
            fail(result.error, code=1)
        raise typer.Exit(1)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _print(r: Any) -> None:
    table = Table(title=f"proxy {r.name} (seed {r.seed}, {r.device}, {r.n_params:,} params)")
    for col in ("component", "accuracy", "chance", "test loss", "train loss", "steps", "s"):
        table.add_column(col, justify="left" if col == "component" else "right")
    for name, m in r.tasks.items():
        table.add_row(
            name,
            _fmt(m.accuracy),
            _fmt(m.chance),
            _fmt(m.test_loss),
            f"{m.train_loss_first:.2f} -> {m.train_loss_last:.2f}",
            str(m.steps),
            f"{m.wall_time_s:.1f}",
        )
    if r.text is not None:
        t = r.text
        table.add_row(
            "text",
            "-",
            "-",
            f"{t.val_loss:.3f} (ppl {t.perplexity:.1f}, {t.bits_per_byte:.2f} bpb)",
            f"{t.train_loss_first:.2f} -> {t.train_loss_last:.2f}",
            str(t.steps),
            f"{t.wall_time_s:.1f}",
        )
    console.print(table)
    console.print(
        f"mad_accuracy {_fmt(r.mad_accuracy)}  memorization "
        f"{_fmt(r.memorization_accuracy)}  text_loss {_fmt(r.text_loss)}  "
        f"quality_loss {_fmt(r.quality_loss)}  ({r.steps} steps, "
        f"{r.wall_time_s:.1f} s, {r.tokens_per_s:,.0f} tok/s"
        f"{', stopped early' if r.stopped_early else ''})"
    )
    if r.weights_path:
        console.print(f"weights ({r.weights_task}): {r.weights_path}")
