"""Identity by content: a sha256 of canonical JSON, the one rule for genomes and stored docs.

A genome's id is the hash of its canonical vector's document ``{"encoding": N, "genes": [...]}``
(operator names are labels, not identity); the database stores the same document and the same
hash (``candidates.genome_hash``), so an id computed anywhere matches the stored one. Python's
``hash()`` is never used for identity (it is salted per process).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from star.genome.encoding import ENCODING_VERSION


def canonical_json(doc: Any) -> str:
    """Sorted keys, no whitespace, ASCII: equal documents give equal text."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_hash(doc: Any) -> str:
    """sha256 (hex) of ``canonical_json(doc)``."""
    return hashlib.sha256(canonical_json(doc).encode("ascii")).hexdigest()


def genome_doc(genes: Iterable[int]) -> dict[str, Any]:
    """The stored form of a genome vector."""
    return {"encoding": ENCODING_VERSION, "genes": [int(g) for g in genes]}


def genome_id(genes: Iterable[int]) -> str:
    """The id of a (canonical) genome vector."""
    return content_hash(genome_doc(genes))
