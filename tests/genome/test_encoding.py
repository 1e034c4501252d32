"""Round trips between the integer vector, the readable form and the genome id."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings

from star.genome import VECTOR_LENGTH, Genome, load_genome, random_genome, repair
from star.genome.encoding import ENCODING_VERSION, LAYOUT, GenomeData
from star.genome.genome import parse_genome_yaml
from star.genome.identity import canonical_json, genome_doc
from tests.conftest import GENOMES
from tests.genome.strategies import any_vectors, seeds
from tests.support.other_process import in_another_process


@pytest.mark.parametrize("path", sorted(GENOMES.glob("*.yaml")), ids=lambda p: p.name)
def test_yaml_vector_yaml_round_trip(path) -> None:
    genome = load_genome(path)
    again = parse_genome_yaml(genome.to_yaml())
    assert again.genes == genome.genes
    assert again.genome_id == genome.genome_id
    assert again.to_spec() == genome.to_spec()
    assert Genome.from_vector(list(genome.genes)).genes == genome.genes


@given(any_vectors())
@settings(max_examples=1500, deadline=None)
def test_any_repaired_vector_round_trips(vector: list[int]) -> None:
    canon = repair(vector)
    genome = Genome.from_vector(canon)
    assert genome.genes == canon  # canonical vectors are fixed points
    assert parse_genome_yaml(genome.to_yaml()).genes == canon
    assert GenomeData.decode(canon).encode() == canon


@given(seeds)
@settings(max_examples=300, deadline=None)
def test_random_genomes_round_trip(seed: int) -> None:
    genes = random_genome(np.random.default_rng(seed))
    genome = Genome.from_vector(genes)
    assert Genome.from_dict(genome.to_dict()).genome_id == genome.genome_id


def test_genome_id_is_sha256_of_the_canonical_document_in_any_process() -> None:
    genome = load_genome(GENOMES / "lfm2-350m.yaml")
    # the document star.genome.identity hashes, written out by hand: sorted keys, no spaces
    genes = ",".join(str(g) for g in genome.genes)
    text = f'{{"encoding":{ENCODING_VERSION},"genes":[{genes}]}}'
    assert canonical_json(genome_doc(genome.genes)) == text
    assert genome.genome_id == hashlib.sha256(text.encode("ascii")).hexdigest()
    # the same id in processes whose str hash() is salted differently
    code = ("import json; from star.genome import load_genome; from tests.conftest import GENOMES;"
            " print(json.dumps(load_genome(GENOMES / 'lfm2-350m.yaml').genome_id))")
    assert {in_another_process(code, hash_seed=salt) for salt in (1, 2)} == {genome.genome_id}
    # different genomes, different ids (every reference genome and a one-gene change)
    ids = {load_genome(p).genome_id for p in sorted(GENOMES.glob("*.yaml"))}
    assert len(ids) == len(list(GENOMES.glob("*.yaml")))
    for i in range(VECTOR_LENGTH):  # the first gene whose change survives repair
        vector = list(genome.genes)
        vector[i] += 1
        if repair(vector) != genome.genes:
            break
    assert Genome.from_vector(repair(vector)).genome_id not in ids


def test_genome_id_ignores_names() -> None:
    a = load_genome(GENOMES / "lfm2-350m.yaml")
    doc = a.to_dict()
    doc["name"] = "something else"
    # rename the operators: labels are not identity
    renamed = {f"op{i}": v for i, v in enumerate(doc["operators"].values())}
    mapping = dict(zip(doc["operators"], renamed, strict=True))
    doc["operators"] = renamed
    doc["backbone"]["layers"] = [mapping[x] for x in doc["backbone"]["layers"]]
    assert set(doc["operators"]).isdisjoint(a.to_dict()["operators"])  # every label differs
    assert Genome.from_dict(doc).genome_id == a.genome_id


def test_layout_documents_every_gene() -> None:
    assert len(LAYOUT) == VECTOR_LENGTH
    assert len({s.path for s in LAYOUT}) == VECTOR_LENGTH
    for slot in LAYOUT:
        assert slot.gene.low <= slot.gene.default <= slot.gene.high
        assert slot.gene.doc


def test_equal_operators_are_merged_in_canonical_form() -> None:
    doc = load_genome(GENOMES / "lfm2-350m.yaml").to_dict()
    ops = doc["operators"]
    first = next(iter(ops))
    ops["copy"] = dict(ops[first])
    doc["backbone"]["layers"][0] = "copy"
    assert Genome.from_dict(doc).genes == load_genome(GENOMES / "lfm2-350m.yaml").genes
