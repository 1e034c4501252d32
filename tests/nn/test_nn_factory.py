"""Every operator makes its parameters with the device and dtype it is given (``Factory``)."""

from __future__ import annotations

import pytest
import torch

from star.genome.spec import Norm
from star.nn.block import Block
from tests.nn.nn_specs import (
    arch,
    attention,
    linear_attention,
    mlp,
    moe_sigmoid,
    shortconv,
    ssm,
    swiglu,
)


@pytest.mark.parametrize("norm", [Norm.RMSNORM, Norm.LAYERNORM])
def test_every_block_puts_its_parameters_on_the_given_device_in_the_given_dtype(
    norm: Norm,
) -> None:
    spec = arch(
        [(attention(), swiglu()), (shortconv(), mlp()), (linear_attention(), moe_sigmoid()),
         (ssm(), None)],
        norm=norm,
    )  # fmt: skip
    for index in range(spec.n_layers):
        block = Block(spec, index, device="meta", dtype=torch.float16)
        tensors = [*block.parameters(), *block.buffers()]
        assert tensors and all(t.is_meta and t.dtype == torch.float16 for t in tensors)
