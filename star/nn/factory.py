"""Where and in what dtype a module makes its parameters: torch's factory arguments, typed once.

Every ``star.nn`` module takes ``device=`` and ``dtype=`` (keyword-only, both default None) and
hands them unchanged to the tensors and submodules it creates; ``StarModel`` builds on the meta
device this way and materialises afterwards.
"""

from __future__ import annotations

from typing import TypedDict

import torch


class Factory(TypedDict, total=False):
    """``**factory: Unpack[Factory]``: the ``device`` and ``dtype`` a module passes down."""

    device: torch.device | str | None
    dtype: torch.dtype | None
