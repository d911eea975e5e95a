"""mamba_ssm `MambaLMHeadModel` checkpoints: their config.json and their keys, in the retriever's terms.

Two functions, usable on their own (the tevatron and SPScanner readers build on them):
- `config_from_mamba_ssm(config_dict)`: a MambaRetrievalConfig from mamba_ssm's config.json, with mamba_ssm's own
  defaults (never transformers' MambaConfig / Mamba2Config defaults, which differ: e.g. Mamba2Config has n_groups=8
  and vocab 32768); variants the retriever cannot run are refused naming the field.
- `map_mamba_ssm_keys(state_dict, config)`: renames mamba_ssm keys by the explicit table below, checks and drops the
  tied `lm_head.weight`, and passes every key the table does not know through unchanged, for the caller to use
  (SPScanner's `binary_head.*`) or to report (`load_into_retriever` rejects it as unexpected).

mamba_ssm writes config.json as `json.dump(config.__dict__)` of its `MambaConfig` dataclass; `MambaLMHeadModel` pads
`vocab_size` up to a multiple of `pad_vocab_size_multiple` (50277 -> 50280 with 8, -> 50288 with 16), and the block
norms (RMSNorm) use eps 1e-5, which config.json does not record.
"""

import math

import torch

from mamba_retrieval.conversion.checkpoint_files import CheckpointKeyError
from mamba_retrieval.modeling.configuration_mamba_retrieval import MambaRetrievalConfig

# mamba_ssm's MambaConfig dataclass fields and defaults (mamba_ssm/models/config_mamba.py, mamba_ssm >= 2.0; 1.x
# configs simply lack d_intermediate, attn_layer_idx, attn_cfg and tie_embeddings).
MAMBA_CONFIG_DEFAULTS = {
    "d_model": 2560,
    "d_intermediate": 0,
    "n_layer": 64,
    "vocab_size": 50277,
    "ssm_cfg": {},
    "attn_layer_idx": [],
    "attn_cfg": {},
    "rms_norm": True,
    "residual_in_fp32": True,
    "fused_add_norm": True,  # a kernel choice (fused add + norm): same numbers either way
    "pad_vocab_size_multiple": 8,
    "tie_embeddings": True,
}
NORM_EPSILON = 1e-5  # MixerModel's norm_epsilon and Mamba2's RMSNormGated eps; not written to config.json

# ssm_cfg fields per mixer: field -> (mamba_ssm default, retriever config field). `None` as the retriever field means
# the field only shapes initialisation or kernels, not the function a trained model computes: accepted, not used.
SSM_FIELDS = {
    "Mamba1": {  # mamba_ssm/modules/mamba_simple.py, Mamba.__init__
        "d_state": (16, "state_size"),
        "d_conv": (4, "conv_kernel"),
        "expand": (2, "expand"),
        "dt_rank": ("auto", "time_step_rank"),
        "bias": (False, "use_bias"),
        "conv_bias": (True, "use_conv_bias"),
        "dt_min": (0.001, None),
        "dt_max": (0.1, None),
        "dt_init": ("random", None),
        "dt_scale": (1.0, None),
        "dt_init_floor": (1e-4, None),
        "use_fast_path": (True, None),
    },
    "Mamba2": {  # mamba_ssm/modules/mamba2.py, Mamba2.__init__
        "d_state": (128, "state_size"),
        "d_conv": (4, "conv_kernel"),
        "expand": (2, "expand"),
        "headdim": (64, "head_dim"),
        "ngroups": (1, "n_groups"),
        "bias": (False, "use_bias"),
        "conv_bias": (True, "use_conv_bias"),
        "chunk_size": (256, "chunk_size"),
        "conv_init": (None, None),
        "A_init_range": ((1, 16), None),
        "dt_min": (0.001, None),
        "dt_max": (0.1, None),
        "dt_init_floor": (1e-4, None),
        "use_mem_eff_path": (True, None),
        "sequence_parallel": (True, None),
    },
}
# Mamba2 options that change the function; only mamba_ssm's defaults are supported (None: "d_inner").
MAMBA2_FIXED = {
    "d_ssm": None,
    "D_has_hdim": False,
    "rmsnorm": True,
    "norm_before_gate": False,
    "dt_limit": (0.0, math.inf),
}
LAYERS = {"Mamba1": "mamba", "Mamba2": "mamba2"}


def is_mamba_ssm_config(config_dict):
    """True for a mamba_ssm config.json (d_model / n_layer, no transformers model_type)."""
    return "d_model" in config_dict and "n_layer" in config_dict and "model_type" not in config_dict


def padded_vocab_size(vocab_size, multiple):
    """MambaLMHeadModel's padding of the embedding rows."""
    return vocab_size + (-vocab_size) % multiple if multiple > 1 else vocab_size


def config_from_mamba_ssm(config_dict, eos_token_id=0):
    """A MambaRetrievalConfig equal to the model mamba_ssm builds from `config_dict` (its config.json)."""
    unknown = sorted(set(config_dict) - set(MAMBA_CONFIG_DEFAULTS))
    if unknown:
        raise ValueError(
            f"config.json has fields that mamba_ssm's MambaConfig does not: {unknown}. "
            "Only plain MambaLMHeadModel checkpoints are supported."
        )
    c = {**MAMBA_CONFIG_DEFAULTS, **config_dict}
    for name in ("d_model", "n_layer", "vocab_size", "pad_vocab_size_multiple"):
        if not isinstance(c[name], int) or isinstance(c[name], bool) or c[name] < 1:
            raise ValueError(f"config.json: {name} must be a whole number >= 1, got {c[name]!r}.")
    if not isinstance(c["ssm_cfg"] or {}, dict):
        raise ValueError(f"config.json: ssm_cfg must be an object, got {c['ssm_cfg']!r}.")
    if c["d_intermediate"]:
        raise ValueError(
            f"d_intermediate = {c['d_intermediate']}: checkpoints with MLP blocks after each mixer "
            "are not supported (only d_intermediate = 0)."
        )
    if c["attn_layer_idx"]:
        raise ValueError(
            f"attn_layer_idx = {c['attn_layer_idx']}: hybrid checkpoints with attention layers are not supported."
        )
    if not c["rms_norm"]:
        raise ValueError("rms_norm = false: checkpoints with LayerNorm blocks are not supported (only RMSNorm).")
    ssm_cfg = dict(c["ssm_cfg"] or {})
    layer = ssm_cfg.pop("layer", "Mamba1")
    if layer not in LAYERS:
        raise ValueError(f"ssm_cfg.layer = {layer!r} is not supported; expected one of {sorted(LAYERS)}.")
    fields = {
        "backbone": LAYERS[layer],
        "hidden_size": c["d_model"],
        "num_hidden_layers": c["n_layer"],
        "vocab_size": padded_vocab_size(c["vocab_size"], c["pad_vocab_size_multiple"]),
        "residual_in_fp32": bool(c["residual_in_fp32"]),
        "layer_norm_epsilon": NORM_EPSILON,
    }
    for name, (default, target) in SSM_FIELDS[layer].items():
        value = ssm_cfg.pop(name, default)
        if target is not None:
            fields[target] = value
    if layer == "Mamba2":
        for name, default in MAMBA2_FIXED.items():
            value = ssm_cfg.pop(name, default)
            if name == "d_ssm" and value in (None, fields["expand"] * c["d_model"]):
                continue
            if name == "dt_limit" and [float(v) for v in value] == list(default):
                continue
            if value != default:
                raise ValueError(
                    f"ssm_cfg.{name} = {value!r} is not supported (only mamba_ssm's default "
                    f"{'d_inner' if name == 'd_ssm' else default!r})."
                )
    if ssm_cfg:
        raise ValueError(
            f"ssm_cfg has fields the {layer} mixer does not take or the retriever does not support: {sorted(ssm_cfg)}."
        )
    return MambaRetrievalConfig(eos_token_id=eos_token_id, **fields)


# --------------------------------------------------------------------------------------------------------------------
# Key map
# --------------------------------------------------------------------------------------------------------------------

# mamba_ssm MambaLMHeadModel key          -> MambaForRetrieval key ({i}: layer, {param}: one of MIXER_PARAMS)
KEY_MAP = (
    ("backbone.embedding.weight", "backbone.embeddings.weight"),
    ("backbone.layers.{i}.norm.weight", "backbone.layers.{i}.norm.weight"),
    ("backbone.layers.{i}.mixer.{param}", "backbone.layers.{i}.mixer.{param}"),
    ("backbone.norm_f.weight", "backbone.norm_f.weight"),
)
# The mixer parameters of each backbone (same names in mamba_ssm and in the retriever); biases per config.
MIXER_PARAMS = {
    "mamba": (
        "in_proj.weight",
        "conv1d.weight",
        "x_proj.weight",
        "dt_proj.weight",
        "dt_proj.bias",
        "A_log",
        "D",
        "out_proj.weight",
    ),
    "mamba2": ("in_proj.weight", "conv1d.weight", "dt_bias", "A_log", "D", "norm.weight", "out_proj.weight"),
}
LM_HEAD = "lm_head.weight"  # tied to the embedding; a retriever has no LM head


def mixer_params(config):
    params = list(MIXER_PARAMS[config.backbone])
    if config.use_conv_bias:
        params.append("conv1d.bias")
    if config.use_bias:
        params += ["in_proj.bias", "out_proj.bias"]
    return params


def key_table(config):
    """[(mamba_ssm key, retriever key)] for every tensor of a model of `config`, from KEY_MAP."""
    table = []
    for source, target in KEY_MAP:
        layers = range(config.num_hidden_layers) if "{i}" in source else [None]
        params = mixer_params(config) if "{param}" in source else [None]
        for i in layers:
            for param in params:
                table.append((source.format(i=i, param=param), target.format(i=i, param=param)))
    return table


def map_mamba_ssm_keys(state_dict, config, tie_embeddings=True):
    """Rename a mamba_ssm state dict to the retriever's keys (a new dict; tensors are not copied).

    Every key of the table must be present (CheckpointKeyError naming the missing ones). `lm_head.weight` is dropped:
    when
    `tie_embeddings` only after checking that it equals the embedding; when untied because a retriever has no LM
    head. Keys the table does not know are returned unchanged, under their own names, for the caller.
    """
    table = key_table(config)
    missing = [source for source, _ in table if source not in state_dict]
    if missing:
        raise CheckpointKeyError(
            f"The mamba_ssm checkpoint lacks keys that a {config.backbone} model of its config.json has: "
            f"{format_keys(missing)}."
        )
    known = {source for source, _ in table} | {LM_HEAD}
    mapped = {target: state_dict[source] for source, target in table}
    if LM_HEAD in state_dict and tie_embeddings:
        head, embedding = state_dict[LM_HEAD], state_dict["backbone.embedding.weight"]
        if head.shape != embedding.shape or not torch.equal(head, embedding):
            raise ValueError(
                "lm_head.weight differs from backbone.embedding.weight although the config ties them "
                "(tie_embeddings); the checkpoint is inconsistent."
            )
    mapped.update({key: value for key, value in state_dict.items() if key not in known})
    return mapped


def format_keys(keys, limit=20):
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")
