"""Exporter errors: one root, so callers can catch every export failure at once."""

from __future__ import annotations


class ExportError(Exception):
    """Root of every error raised by ``star.export``."""


class UnsupportedGenome(ExportError):
    """No stock llama.cpp architecture runs this spec exactly. Raised before any file is written.

    ``layer`` is the offending layer's index (``None`` for a whole-model constraint such as "needs
    at least one attention layer"), ``operator`` the operator (``"linear_attention"``,
    ``"swiglu"``, ``"layernorm"``, ...), ``reason`` why, and ``target`` the architecture that was
    tried (``None`` when no architecture family applies at all).
    """

    def __init__(
        self, *, layer: int | None, operator: str, reason: str, target: str | None = None
    ) -> None:
        self.layer = layer
        self.operator = operator
        self.reason = reason
        self.target = target
        where = f"layer {layer}" if layer is not None else "model"
        via = f" [{target}]" if target else ""
        super().__init__(f"{where} ({operator}){via}: {reason}")


class ExportValidationError(ExportError):
    """The planned tensors or metadata disagree with what the target architecture requires.

    ``item`` names the tensor or metadata key at fault.
    """

    def __init__(self, item: str, reason: str) -> None:
        self.item = item
        self.reason = reason
        super().__init__(f"{item}: {reason}")


class ExportReadbackError(ExportError):
    """The written file, read back with ``gguf.GGUFReader``, differs from what was planned."""
