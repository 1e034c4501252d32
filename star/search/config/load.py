"""Reading a ``search:`` section: YAML, paths relative to the config file, and the genome files
it names (they exist, parse, and run on an allowed stock llama.cpp architecture)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from star.genome import Genome, load_genome
from star.search.config.errors import SearchConfigError, _problems
from star.search.config.schema import SearchConfig


def parse_search_config(doc: Any, *, base_dir: Path | None = None,
                        name: str | None = None) -> SearchConfig:
    """Validate a ``search:`` mapping; relative genome paths are resolved against ``base_dir``."""
    if not isinstance(doc, dict):
        raise SearchConfigError([f"search: expected a mapping, got {type(doc).__name__}"])
    doc = dict(doc)
    if name is not None:
        doc["name"] = name
    if base_dir is not None:

        def resolve(p: Any) -> Any:
            """Relative to the config file; else to the working directory, if it is there."""
            if not isinstance(p, str) or Path(p).is_absolute():
                return p
            here = base_dir / p
            return str(here if here.exists() or not Path(p).exists() else Path(p).resolve())

        if "base_genome" in doc:
            doc["base_genome"] = resolve(doc["base_genome"])
        if isinstance(doc.get("seed_genomes"), list):
            doc["seed_genomes"] = [resolve(p) for p in doc["seed_genomes"]]
        if isinstance(doc.get("baselines"), list):
            doc["baselines"] = [
                {**b, "genome": resolve(b.get("genome"))} if isinstance(b, dict) else resolve(b)
                for b in doc["baselines"]
            ]
    try:
        config = SearchConfig.model_validate(doc)
    except ValidationError as exc:
        raise SearchConfigError(_problems(exc)) from None
    problems: list[str] = []
    paths = [("base_genome", config.base_genome)] if config.base_genome else []
    paths += [(f"seed_genomes[{i}]", p) for i, p in enumerate(config.seed_genomes)]
    paths += [(f"baselines[{i}]", b.genome) for i, b in enumerate(config.baselines)]
    for where, path in paths:
        try:
            genome = load_genome(path)
        except FileNotFoundError:
            problems.append(f"{where}: {path} does not exist")
            continue
        except Exception as exc:  # noqa: BLE001 - InvalidGenome, YAML errors: all named here
            problems.append(f"{where}: {path}: {exc}")
            continue
        if where != "base_genome":
            problems += runtime_problems(config, where, path, genome)
    if problems:
        raise SearchConfigError(problems)
    return config


def runtime_problems(config: SearchConfig, where: str, path: Path, genome: Genome) -> list[str]:
    """A seed or baseline that the run's runtime cannot run at the deployment scale is an error
    naming the field: it would otherwise be dropped (or refitted into another genome) silently."""
    from star.export import UnsupportedGenome, check_exportable

    if config.runtime == "executorch":  # any genome runs; the static program must fit
        from star.search.steps import pte_problem

        try:
            problem = pte_problem(config.deploy_spec(genome), config)
        except ValueError as exc:
            return [f"{where}: {path}: at deploy_scale: {exc}"]
        return [] if problem is None else [f"{where}: {path} cannot be exported to a .pte: "
                                           f"{problem}"]
    try:
        arch = check_exportable(config.deploy_spec(genome)).name
    except UnsupportedGenome as exc:
        return [f"{where}: {path} cannot be exported to stock llama.cpp: {exc}"]
    except ValueError as exc:  # the deployment scale cannot be applied to it
        return [f"{where}: {path}: at deploy_scale: {exc}"]
    if config.allowed_archs is not None and arch not in config.allowed_archs:
        return [f"{where}: {path} exports to llama.cpp arch {arch!r}, which allowed_archs "
                f"{config.allowed_archs} excludes (add {arch!r} or remove the genome)"]
    return []


def load_search_config(path: Path, *, name: str | None = None) -> SearchConfig:
    """The ``search:`` section of a lab_config.yaml."""
    path = Path(path)
    if not path.is_file():
        raise SearchConfigError([f"config: {path} does not exist"])
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SearchConfigError([f"config: {path} is not valid YAML: {exc}"]) from None
    if not isinstance(doc, dict) or "search" not in doc:
        raise SearchConfigError([f"search: {path} has no `search:` section"])
    section = doc["search"]
    if isinstance(section, dict) and "proxy" not in section and isinstance(doc.get("proxy"), dict):
        section = {**section, "proxy": doc["proxy"]}  # the file's `proxy:` (star proxy train)
    return parse_search_config(section, base_dir=path.parent, name=name)
