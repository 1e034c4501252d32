"""Hierarchical architecture genomes: backbone, operator and featurizer genes.

Public surface: ``Genome`` (canonical vector + readable YAML form + typed spec), ``load_genome``,
``validate_vector`` / ``Problem`` / ``InvalidGenome``, ``repair``, ``mutate`` / ``crossover`` /
``random_genome``, ``scale_spec`` / ``Scale`` and the ``ArchSpec`` family in ``star.genome.spec``.
"""

from star.genome.encoding import LAYOUT, MAX_LAYERS, MAX_OPERATORS, VECTOR_LENGTH, GenomeData
from star.genome.genome import Genome, load_genome
from star.genome.repair import canonicalize, repair
from star.genome.scale import PROXY, TINY, Scale, scale_spec
from star.genome.spec import ArchSpec, LayerSpec
from star.genome.validate import InvalidGenome, Problem, validate_vector
from star.genome.variation import Resolution, crossover, mutate, random_genome

__all__ = [
    "LAYOUT", "MAX_LAYERS", "MAX_OPERATORS", "VECTOR_LENGTH", "ArchSpec", "Genome", "GenomeData",
    "InvalidGenome", "LayerSpec", "PROXY", "Problem", "Resolution", "Scale", "TINY",
    "canonicalize", "crossover", "load_genome", "mutate", "random_genome", "repair",
    "scale_spec", "validate_vector",
]
