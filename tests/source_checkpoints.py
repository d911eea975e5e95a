"""Tiny checkpoints in the exact formats `mamba-retrieval convert` reads, with random weights.

mamba_ssm's `MambaLMHeadModel.save_pretrained` writes `torch.save(model.state_dict(), "pytorch_model.bin")` (the tied
`lm_head.weight` is the embedding tensor itself) and `json.dump(config.__dict__, f, indent=4)` as config.json.
"""

import json
from pathlib import Path

import torch
from helpers import tiny_model
from safetensors.torch import save_file
from transformers import Mamba2Config, Mamba2ForCausalLM, MambaConfig, MambaForCausalLM, PreTrainedTokenizerFast

from mamba_retrieval.modeling.tokenizer import VENDORED_TOKENIZER

# config.json as mamba_ssm writes it (MambaConfig.__dict__): 1.x for Mamba-1 (state-spaces/mamba-130m), 2.x for
# Mamba-2 (state-spaces/mamba2-130m, SPScanner-130m), at the published widths; `mamba_ssm_config` shrinks them.
MAMBA1_130M = {
    "d_model": 768,
    "n_layer": 24,
    "vocab_size": 50277,
    "ssm_cfg": {},
    "rms_norm": True,
    "residual_in_fp32": True,
    "fused_add_norm": True,
    "pad_vocab_size_multiple": 8,
}
MAMBA2_130M = {
    **MAMBA1_130M,
    "d_intermediate": 0,
    "ssm_cfg": {"layer": "Mamba2"},
    "attn_layer_idx": [],
    "attn_cfg": {},
    "pad_vocab_size_multiple": 16,
    "tie_embeddings": True,
}


def mamba_ssm_config(published, **ssm_cfg):
    """`published` at the tiny size of helpers.tiny_config (d_model 32, 2 layers), with these ssm_cfg entries."""
    return {**published, "d_model": 32, "n_layer": 2, "ssm_cfg": {**published["ssm_cfg"], **ssm_cfg}}


MAMBA_SSM_CONFIGS = {
    "mamba": mamba_ssm_config(MAMBA1_130M, d_state=8),
    "mamba2": mamba_ssm_config(MAMBA2_130M, d_state=8, headdim=16, chunk_size=8),
}


def mamba_ssm_state_dict(backbone, seed=0):
    """A MambaLMHeadModel state dict: mamba_ssm key names, every tensor random (norms and D included)."""
    generator = torch.Generator().manual_seed(seed + 1000)
    state = {}
    for key, value in tiny_model(backbone, seed=seed).state_dict().items():
        key = "backbone.embedding.weight" if key == "backbone.embeddings.weight" else key
        state[key] = value + 0.1 * torch.randn(value.shape, generator=generator)
    state["lm_head.weight"] = state["backbone.embedding.weight"]  # tied: the same tensor
    return state


def write_mamba_ssm_folder(folder, backbone, seed=0, state_dict=None, config=None, safetensors=False):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state_dict = mamba_ssm_state_dict(backbone, seed) if state_dict is None else state_dict
    if safetensors:  # safetensors refuses shared tensors: the tied head is stored as an equal copy
        save_file({k: v.clone().contiguous() for k, v in state_dict.items()}, str(folder / "model.safetensors"))
    else:
        torch.save(state_dict, folder / "pytorch_model.bin")
    with open(folder / "config.json", "w") as f:
        json.dump(config or MAMBA_SSM_CONFIGS[backbone], f, indent=4)
    return state_dict


def tevatron_state_dict(query, passage=None, wrapper=""):
    """A tevatron DenseModel state dict: `lm_q.*` and `lm_p.*` (the same tensors when tied), behind `wrapper`."""
    passage = query if passage is None else passage
    state = {f"{wrapper}lm_q.{k}": v for k, v in query.items()}
    state.update({f"{wrapper}lm_p.{k}": v for k, v in passage.items()})
    return state


def write_tevatron_untied_folders(folder, backbone):
    """tevatron `--untie_encoder` output: query_model/ and passage_model/, each a mamba_ssm folder."""
    query = write_mamba_ssm_folder(Path(folder) / "query_model", backbone, seed=1)
    passage = write_mamba_ssm_folder(Path(folder) / "passage_model", backbone, seed=2)
    return query, passage


def make_transformers_lm(folder, backbone):
    """A tiny language model saved the way transformers saves `state-spaces/mamba-*-hf`, tokenizer included."""
    torch.manual_seed(0)
    if backbone == "mamba":
        lm = MambaForCausalLM(
            MambaConfig(
                vocab_size=50280,
                hidden_size=32,
                num_hidden_layers=2,
                state_size=8,
                layer_norm_epsilon=1e-5,
                tie_word_embeddings=True,
            )
        )
    else:
        lm = Mamba2ForCausalLM(
            Mamba2Config(
                vocab_size=50288,
                hidden_size=32,
                num_hidden_layers=2,
                state_size=8,
                head_dim=16,
                num_heads=4,
                n_groups=1,
                chunk_size=8,
                layer_norm_epsilon=1e-5,
                tie_word_embeddings=True,
            )
        )
    lm.save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_file=str(VENDORED_TOKENIZER), eos_token="<|endoftext|>").save_pretrained(folder)
    return lm.eval()


# SPScanner-130m's config.json at tiny sizes: d_model 32, 2 layers, small state.
SPSCANNER_CONFIG = mamba_ssm_config(MAMBA2_130M, d_state=16, headdim=16, chunk_size=16)


def write_spscanner_checkpoint(folder, dtype=torch.float32, seed=0):
    """The exact key set of SPScanner-130m (mamba_ssm names, tied lm_head, binary_head) with random tensors."""
    generator = torch.Generator().manual_seed(seed)
    d, inner, heads, state, conv = 32, 64, 4, 16, 4
    conv_dim = inner + 2 * state

    def rand(*shape, scale=0.1):
        return (torch.randn(*shape, generator=generator) * scale).to(dtype)

    weights = {"backbone.embedding.weight": rand(50288, d, scale=0.02), "backbone.norm_f.weight": 1 + rand(d)}
    for i in range(2):
        prefix = f"backbone.layers.{i}."
        weights.update(
            {
                prefix + "norm.weight": 1 + rand(d),
                prefix + "mixer.in_proj.weight": rand(2 * inner + 2 * state + heads, d),
                prefix + "mixer.conv1d.weight": rand(conv_dim, 1, conv, scale=0.3),
                prefix + "mixer.conv1d.bias": rand(conv_dim),
                prefix + "mixer.dt_bias": rand(heads) - 2,
                prefix + "mixer.A_log": torch.log(torch.linspace(1, 16, heads)).to(dtype),
                prefix + "mixer.D": 1 + rand(heads),
                prefix + "mixer.norm.weight": 1 + rand(inner),
                prefix + "mixer.out_proj.weight": rand(d, inner),
            }
        )
    weights["lm_head.weight"] = weights["backbone.embedding.weight"].clone()
    weights["binary_head.weight"] = rand(1, d, scale=1.0)
    weights["binary_head.bias"] = rand(1)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(weights, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(SPSCANNER_CONFIG, indent=4))
    return weights
