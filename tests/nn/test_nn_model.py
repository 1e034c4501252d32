"""StarModel construction: parameter count, meta device, weight sharing, names, init, training."""

from __future__ import annotations

import torch
from nn_specs import (
    arch,
    attention,
    build,
    lfm2_formula,
    lfm2_spec,
    mixed_specs,
    moe_sigmoid,
    shortconv,
    ssm,
    swiglu,
)

from star.genome.spec import (
    ArchSpec,
    AttentionSpec,
    FFNSpec,
    LayerSpec,
    MoESpec,
    Norm,
    Routing,
)
from star.nn import StarModel

LFM2_350M_PARAMS = 354_483_968


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_lfm2_350m_param_count_on_meta() -> None:
    spec = lfm2_spec(
        d=1024, n_heads=16, n_kv=8, ff=4608, attn=(2, 5, 8, 10, 12, 14), n_layers=16, vocab=65536
    )
    model = StarModel(spec, device="meta")
    assert all(p.is_meta for p in model.parameters())
    formula = lfm2_formula(V=65536, d=1024, n_conv=10, n_attn=6, n_kv=8, hd=64, ff=4608)
    assert formula == LFM2_350M_PARAMS
    assert n_params(model) == LFM2_350M_PARAMS


def test_meta_construction_does_not_allocate() -> None:
    """An 8B-shaped MoE model counts its parameters on meta (would need ~33 GB in float32)."""
    layers = tuple(
        LayerSpec(
            index=i,
            operator=0,
            mixer=AttentionSpec(32, 8, 64, qk_norm=True),
            channel=FFNSpec(7168) if i < 2 else MoESpec(32, 4, 1792, Routing.SIGMOID, True),
            norm=Norm.RMSNORM,
        )
        for i in range(24)
    )
    spec = ArchSpec("big", 2048, 65536, True, 1e6, 1e-5, 4096, layers)
    model = StarModel(spec, device="meta")
    assert n_params(model) > 7e9
    assert all(p.is_meta for p in model.parameters())


def test_weight_sharing_counts_once_and_lists_every_name() -> None:
    spec = mixed_specs()["shared"]
    model = StarModel(spec)
    assert model.layers[2].mixer is model.layers[0].mixer is model.layers[4].mixer
    assert model.layers[3].mixer is model.layers[1].mixer
    assert model.layers[5].mixer is not model.layers[0].mixer
    unshared = StarModel(
        arch([(m.mixer, m.channel) for m in spec.layers], operators=[0, 1, 0, 1, 0, 2])
    )
    conv = sum(p.numel() for p in model.layers[0].mixer.parameters())
    mamba = sum(p.numel() for p in model.layers[1].mixer.parameters())
    assert n_params(unshared) - n_params(model) == 2 * conv + mamba
    state = model.state_dict()
    assert "layers.4.mixer.conv.weight" in state and "layers.3.mixer.A_log" in state
    assert torch.equal(state["layers.4.mixer.conv.weight"], state["layers.0.mixer.conv.weight"])
    assert state.keys() == unshared.state_dict().keys()


def test_parameter_names_and_shapes_follow_the_contract() -> None:
    s = ssm(groups=2)
    spec = arch(
        [(shortconv(), swiglu(96)), (attention(hd=24), moe_sigmoid()), (s, None)],
        tie=False,
        norm=Norm.LAYERNORM,
    )
    shapes = {k: tuple(v.shape) for k, v in StarModel(spec, device="meta").state_dict().items()}
    d, V = 64, 256
    expected = {
        "embed.weight": (V, d),
        "final_norm.weight": (d,),
        "final_norm.bias": (d,),
        "lm_head.weight": (V, d),
        "layers.0.mixer.in_proj.weight": (3 * d, d),
        "layers.0.mixer.conv.weight": (d, 1, 3),
        "layers.0.mixer.out_proj.weight": (d, d),
        "layers.0.ffn.gate.weight": (96, d),
        "layers.0.ffn.up.weight": (96, d),
        "layers.0.ffn.down.weight": (d, 96),
        "layers.1.mixer.q_proj.weight": (4 * 24, d),
        "layers.1.mixer.k_proj.weight": (2 * 24, d),
        "layers.1.mixer.v_proj.weight": (2 * 24, d),
        "layers.1.mixer.o_proj.weight": (d, 4 * 24),
        "layers.1.mixer.q_norm.weight": (24,),
        "layers.1.mixer.k_norm.weight": (24,),
        "layers.1.ffn.router.weight": (8, d),
        "layers.1.ffn.expert_bias": (8,),
        "layers.1.ffn.gate_exps": (8, 32, d),
        "layers.1.ffn.up_exps": (8, 32, d),
        "layers.1.ffn.down_exps": (8, d, 32),
        "layers.2.mixer.in_proj.weight": (s.in_proj_dim, d),
        "layers.2.mixer.conv1d.weight": (s.conv_dim, 1, 4),
        "layers.2.mixer.conv1d.bias": (s.conv_dim,),
        "layers.2.mixer.dt_bias": (8,),
        "layers.2.mixer.A_log": (8,),
        "layers.2.mixer.D": (8,),
        "layers.2.mixer.norm.weight": (s.d_inner,),
        "layers.2.mixer.out_proj.weight": (d, s.d_inner),
    }
    for i in range(3):
        expected[f"layers.{i}.mixer_norm.weight"] = (d,)
        expected[f"layers.{i}.mixer_norm.bias"] = (d,)
    for i in range(2):  # layer 2 has no channel mixer, hence no ffn_norm
        expected[f"layers.{i}.ffn_norm.weight"] = (d,)
        expected[f"layers.{i}.ffn_norm.bias"] = (d,)
    assert shapes == expected


def test_init_is_deterministic_and_sensible() -> None:
    spec = mixed_specs()["hybrid"]
    a, b = StarModel(spec, seed=3), StarModel(spec, seed=3)
    c = StarModel(spec, seed=4)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not torch.equal(a.embed.weight, c.embed.weight)
    mamba = a.layers[0].mixer
    assert torch.all(mamba.D == 1) and torch.all(mamba.norm.weight == 1)
    a_vals = torch.exp(mamba.A_log)
    assert a_vals.min() >= 1 and a_vals.max() <= 16
    dt = torch.nn.functional.softplus(mamba.dt_bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6
    assert abs(a.embed.weight.std().item() - 0.02) < 2e-3
    assert torch.all(a.final_norm.weight == 1)
    a.init_weights(4)
    assert torch.equal(a.embed.weight, c.embed.weight)


def test_backward_reaches_every_trainable_parameter() -> None:
    spec = mixed_specs()["hybrid"]
    model = build(spec)
    model.train()
    toks = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    logits = model(toks)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 256), toks[:, 1:].flatten())
    loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        else:
            assert name.endswith("expert_bias")


def test_bfloat16_forward_and_decode() -> None:
    spec = mixed_specs()["hybrid"]
    model = StarModel(spec, dtype=torch.bfloat16)
    toks = torch.randint(0, 256, (1, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(toks)
        cache = model.new_cache(1)
        inc = torch.cat([model(toks[:, :4], cache), model(toks[:, 4:], cache)], dim=1)
    assert full.dtype == torch.bfloat16 and torch.isfinite(full).all()
    assert (full.float() - inc.float()).abs().max().item() < 0.1
    assert cache.nbytes() > 0
