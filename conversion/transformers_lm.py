"""Load a transformers `*-hf` Mamba / Mamba-2 language-model folder as a MambaForRetrieval, strictly.

`MambaForCausalLM` / `Mamba2ForCausalLM` keys are the retriever's own (`backbone.*`), apart from the older spelling
`backbone.embedding.weight` and the language-model head, which a retriever does not use.
"""

import math
from pathlib import Path

import torch

from mamba_retrieval.conversion.checkpoint_files import read_state_dict
from mamba_retrieval.conversion.strict_loading import load_into_retriever
from mamba_retrieval.modeling.configuration_mamba_retrieval import MambaRetrievalConfig
from mamba_retrieval.modeling.data_files import read_json_object

# transformers config field -> retriever config field, for fields copied as they are.
_SHAPE = ("vocab_size", "hidden_size", "num_hidden_layers", "state_size", "expand", "conv_kernel")
_OPTIONS = ("use_bias", "use_conv_bias", "layer_norm_epsilon", "residual_in_fp32")
COPIED_FIELDS = {
    "mamba": (*_SHAPE, "time_step_rank", *_OPTIONS),
    "mamba2": (*_SHAPE, "head_dim", "n_groups", "chunk_size", *_OPTIONS),
}
RENAMED_KEYS = {"backbone.embedding.weight": "backbone.embeddings.weight"}
LM_HEAD = "lm_head.weight"


def config_from_transformers(hf_config, eos_token_id=0):
    """A MambaRetrievalConfig from a transformers MambaConfig / Mamba2Config dict; unsupported settings refused."""
    model_type = hf_config.get("model_type")
    if model_type not in COPIED_FIELDS:
        raise ValueError(
            f"config.json has model_type {model_type!r}; expected 'mamba' or 'mamba2' "
            "(a transformers MambaForCausalLM / Mamba2ForCausalLM folder)."
        )
    if hf_config.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act {hf_config['hidden_act']!r} is not supported (only 'silu').")
    missing = [f for f in COPIED_FIELDS[model_type] if f not in hf_config and f != "time_step_rank"]
    if missing:
        raise ValueError(
            f"config.json lacks the fields {missing}; write them explicitly rather than rely on transformers' defaults."
        )
    fields = {f: hf_config[f] for f in COPIED_FIELDS[model_type] if f in hf_config}
    if model_type == "mamba2":
        limit = [_json_float(v) for v in hf_config.get("time_step_limit", [0.0, math.inf])]
        if limit != [0.0, math.inf]:
            raise ValueError(f"time_step_limit {limit} is not supported (only the default (0, inf)).")
        expected_heads = fields["expand"] * fields["hidden_size"] // fields["head_dim"]
        if hf_config.get("num_heads", expected_heads) != expected_heads:
            raise ValueError(
                f"num_heads {hf_config['num_heads']} != expand * hidden_size / head_dim ({expected_heads})."
            )
    return MambaRetrievalConfig(backbone=model_type, eos_token_id=eos_token_id, **fields)


def _json_float(value):
    """transformers 5 writes infinity as {"__float__": "Infinity"}; older versions as a bare Infinity."""
    return float(value["__float__"]) if isinstance(value, dict) and "__float__" in value else float(value)


def map_transformers_keys(state_dict, config):
    """Rename to the retriever's keys; the LM head is dropped only when it is tied (equal to the embedding) or the
    config says it is untied (the retriever never uses it)."""
    state_dict = {RENAMED_KEYS.get(k, k): v for k, v in state_dict.items()}
    head = state_dict.pop(LM_HEAD, None)
    embedding = state_dict.get("backbone.embeddings.weight")
    if head is not None and config.get("tie_word_embeddings", True) and embedding is not None:
        if head.shape != embedding.shape or not torch.equal(head, embedding):
            raise ValueError(
                "lm_head.weight differs from the embedding although tie_word_embeddings is set; "
                "the checkpoint is inconsistent."
            )
    return state_dict


def load_transformers_lm(folder, eos_token_id=0):
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json; expected a transformers Mamba / Mamba-2 folder.")
    hf_config = read_json_object(config_path)
    config = config_from_transformers(hf_config, eos_token_id=eos_token_id)
    if eos_token_id >= config.vocab_size:
        raise ValueError(f"EOS id {eos_token_id} is beyond the {config.vocab_size} embedding rows.")
    state_dict = map_transformers_keys(read_state_dict(folder), hf_config)
    return load_into_retriever(config, state_dict)
