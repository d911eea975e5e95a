"""mamba_ssm config.json and key names -> the retriever's config and keys."""

import pytest
import torch
from source_checkpoints import MAMBA1_130M as MAMBA_130M
from source_checkpoints import MAMBA2_130M

from mamba_retrieval.conversion.mamba_ssm_format import (
    config_from_mamba_ssm,
    is_mamba_ssm_config,
    key_table,
    map_mamba_ssm_keys,
)

# The keys of one layer of those checkpoints, as mamba_ssm names them.
MAMBA1_LAYER_KEYS = [
    "A_log",
    "D",
    "conv1d.bias",
    "conv1d.weight",
    "dt_proj.bias",
    "dt_proj.weight",
    "in_proj.weight",
    "out_proj.weight",
    "x_proj.weight",
]
MAMBA2_LAYER_KEYS = [
    "A_log",
    "D",
    "conv1d.bias",
    "conv1d.weight",
    "dt_bias",
    "in_proj.weight",
    "norm.weight",
    "out_proj.weight",
]


def test_mamba1_config_uses_mamba_ssm_defaults():
    config = config_from_mamba_ssm(MAMBA_130M)
    assert is_mamba_ssm_config(MAMBA_130M)
    assert (config.backbone, config.hidden_size, config.num_hidden_layers) == ("mamba", 768, 24)
    assert config.vocab_size == 50280
    assert (config.state_size, config.expand, config.conv_kernel, config.time_step_rank) == (16, 2, 4, 48)
    assert (config.use_bias, config.use_conv_bias, config.residual_in_fp32) == (False, True, True)
    assert config.layer_norm_epsilon == 1e-5


def test_mamba2_config_uses_mamba_ssm_defaults_not_transformers():
    config = config_from_mamba_ssm(MAMBA2_130M)
    assert (config.backbone, config.vocab_size, config.state_size, config.head_dim) == ("mamba2", 50288, 128, 64)
    assert (config.n_groups, config.expand, config.num_heads, config.chunk_size) == (1, 2, 24, 256)
    assert config_from_mamba_ssm({**MAMBA2_130M, "pad_vocab_size_multiple": 8}).vocab_size == 50280


def test_ssm_cfg_overrides_are_used():
    config = config_from_mamba_ssm(
        {
            **MAMBA2_130M,
            "d_model": 64,
            "ssm_cfg": {"layer": "Mamba2", "d_state": 16, "headdim": 16, "ngroups": 2, "chunk_size": 8, "dt_min": 0.01},
        }
    )
    assert (config.state_size, config.head_dim, config.n_groups, config.chunk_size) == (16, 16, 2, 8)
    assert config.num_heads == 8
    config = config_from_mamba_ssm({**MAMBA_130M, "ssm_cfg": {"d_state": 8, "dt_rank": 12, "d_conv": 3}})
    assert (config.state_size, config.time_step_rank, config.conv_kernel) == (8, 12, 3)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"d_intermediate": 512}, "d_intermediate"),
        ({"attn_layer_idx": [3]}, "attn_layer_idx"),
        ({"rms_norm": False}, "rms_norm"),
        ({"ssm_cfg": {"layer": "Mamba3"}}, "ssm_cfg.layer"),
        ({"ssm_cfg": {"layer": "Mamba2", "D_has_hdim": True}}, "ssm_cfg.D_has_hdim"),
        ({"ssm_cfg": {"layer": "Mamba2", "norm_before_gate": True}}, "ssm_cfg.norm_before_gate"),
        ({"ssm_cfg": {"layer": "Mamba2", "d_ssm": 512}}, "ssm_cfg.d_ssm"),
        ({"ssm_cfg": {"layer": "Mamba2", "dt_limit": [0.0, 0.1]}}, "ssm_cfg.dt_limit"),
        ({"ssm_cfg": {"layer": "Mamba2", "mystery": 1}}, "mystery"),
        ({"ssm_cfg": {"headdim": 32}}, "headdim"),  # a Mamba-2 field on a Mamba-1 mixer
        ({"bidirectional": True}, "bidirectional"),
    ],
)
def test_unsupported_variants_are_refused_naming_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        config_from_mamba_ssm({**MAMBA2_130M, **change})


def test_key_table_names_every_real_key():
    for base, layer_keys in ((MAMBA_130M, MAMBA1_LAYER_KEYS), (MAMBA2_130M, MAMBA2_LAYER_KEYS)):
        config = config_from_mamba_ssm({**base, "n_layer": 2})
        sources = {source for source, _ in key_table(config)}
        expected = {"backbone.embedding.weight", "backbone.norm_f.weight"} | {
            f"backbone.layers.{i}.{k}" for i in range(2) for k in ["norm.weight"] + [f"mixer.{p}" for p in layer_keys]
        }
        assert sources == expected
        assert dict(key_table(config))["backbone.embedding.weight"] == "backbone.embeddings.weight"


def fake_state_dict(config):
    return {source: torch.randn(2) for source, _ in key_table(config)}


def test_map_checks_tied_head_and_passes_extras_through():
    config = config_from_mamba_ssm({**MAMBA2_130M, "n_layer": 1})
    state = fake_state_dict(config)
    state["lm_head.weight"] = state["backbone.embedding.weight"].clone()
    state["binary_head.weight"] = torch.randn(1, 2)
    mapped = map_mamba_ssm_keys(state, config)
    assert "lm_head.weight" not in mapped and "backbone.embeddings.weight" in mapped
    assert mapped["binary_head.weight"] is state["binary_head.weight"]
    state["lm_head.weight"] = torch.randn(2)
    with pytest.raises(ValueError, match="lm_head.weight differs"):
        map_mamba_ssm_keys(state, config)
    assert "lm_head.weight" not in map_mamba_ssm_keys(state, config, tie_embeddings=False)
    del state["backbone.layers.0.mixer.dt_bias"]
    with pytest.raises(KeyError, match=r"backbone\.layers\.0\.mixer\.dt_bias"):
        map_mamba_ssm_keys(state, config, tie_embeddings=False)
