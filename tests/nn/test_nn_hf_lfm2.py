"""LFM2 equivalence with HF transformers ``Lfm2ForCausalLM`` (the reference implementation)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402  (test dependency, never skipped)
from nn_specs import lfm2_formula, lfm2_spec  # noqa: E402

from star.export.hf import hf_name_map  # noqa: E402  (the one home of HF names)
from star.nn import StarModel  # noqa: E402

LAYER_TYPES = ["conv", "conv", "full_attention", "conv", "full_attention"]
ATTN = tuple(i for i, kind in enumerate(LAYER_TYPES) if kind == "full_attention")
D, HEADS, KV, FF, V = 64, 4, 2, 96, 256
SPEC = lfm2_spec(d=D, n_heads=HEADS, n_kv=KV, ff=FF, attn=ATTN, n_layers=len(LAYER_TYPES), vocab=V)
HF_TO_OURS = hf_name_map(SPEC)  # HF checkpoint name -> our parameter


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, StarModel]:
    config = transformers.Lfm2Config(
        vocab_size=V,
        hidden_size=D,
        intermediate_size=FF,
        num_hidden_layers=len(LAYER_TYPES),
        num_attention_heads=HEADS,
        num_key_value_heads=KV,
        layer_types=LAYER_TYPES,
        block_auto_adjust_ff_dim=False,
        conv_L_cache=3,
        tie_word_embeddings=True,
        norm_eps=1e-5,
        max_position_embeddings=512,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    )
    torch.manual_seed(0)
    hf = transformers.Lfm2ForCausalLM(config).eval()
    with torch.no_grad():  # O(1)-scale weights, so that every op moves the logits
        for p in hf.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, p.shape[-1] ** -0.5)
            else:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    ours = StarModel(SPEC).eval()
    hf_state = {HF_TO_OURS[k]: v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    ours.load_state_dict(hf_state, strict=True)
    return hf, ours


def test_hf_names_map_one_to_one(pair: tuple[torch.nn.Module, StarModel]) -> None:
    hf, ours = pair
    assert set(HF_TO_OURS) == set(hf.state_dict()) - {"lm_head.weight"}  # tied head
    assert set(HF_TO_OURS.values()) == set(ours.state_dict())


def test_logits_match_hf(pair: tuple[torch.nn.Module, StarModel]) -> None:
    hf, ours = pair
    toks = torch.randint(0, V, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf(input_ids=toks).logits
        got = ours(toks)
    assert ref.abs().max() > 1.0  # meaningful scale
    assert (got - ref).abs().max().item() < 1e-4


def test_cached_decode_matches_hf_forward(pair: tuple[torch.nn.Module, StarModel]) -> None:
    """Our cached decode against HF's full forward over the same prefix + continuation."""
    hf, ours = pair
    toks = torch.randint(0, V, (1, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(input_ids=toks).logits
        cache = ours.new_cache(1)
        got = torch.cat(
            [ours(toks[:, :10], cache)] + [ours(toks[:, t : t + 1], cache) for t in range(10, 16)],
            1,
        )
    assert (got - ref).abs().max().item() < 1e-4


def test_param_count_matches_hf_and_formula(pair: tuple[torch.nn.Module, StarModel]) -> None:
    hf, ours = pair
    n_hf = sum(p.numel() for p in hf.parameters())
    n_ours = sum(p.numel() for p in ours.parameters())
    formula = lfm2_formula(
        V=V,
        d=D,
        n_conv=len(LAYER_TYPES) - len(ATTN),
        n_attn=len(ATTN),
        n_kv=KV,
        hd=D // HEADS,
        ff=FF,
    )
    assert n_hf == n_ours == formula
