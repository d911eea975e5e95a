"""Retriever source formats: how each kind of checkpoint folder is recognised and read into retriever weights.

A reader returns a `Source`: the retriever config, the retriever state dict of each encoder (already renamed by the
format's explicit key map, not yet checked for completeness) and the files it read. The table of formats, SPScanner
included, is `convert.FORMATS`.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mamba_retrieval.conversion.checkpoint_files import read_state_dict, weight_files, weight_keys
from mamba_retrieval.conversion.mamba_ssm_format import config_from_mamba_ssm, is_mamba_ssm_config, map_mamba_ssm_keys
from mamba_retrieval.conversion.tevatron_format import (
    SHARED,
    UNTIED_FOLDERS,
    has_tevatron_keys,
    split_encoders,
    strip_wrapper_prefixes,
)
from mamba_retrieval.conversion.transformers_lm import config_from_transformers, map_transformers_keys
from mamba_retrieval.modeling.configuration_mamba_retrieval import MambaRetrievalConfig
from mamba_retrieval.modeling.data_files import read_json_object


@dataclass
class Source:
    format: str
    config: MambaRetrievalConfig
    encoders: dict  # role ("shared", or "query" and "document") -> retriever state dict
    files: list  # every file read (config and weights), for the report's hashes
    tokenizer_file: Optional[Path] = None  # the source's tokenizer.json, if it has one (else the vendored one)
    notes: list = field(default_factory=list)


def read_config(folder):
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json.")
    return read_json_object(path)


def tokenizer_file(folder):
    """The folder's tokenizer.json (transformers *-hf folders and tevatron output may hold one), or None."""
    path = Path(folder) / "tokenizer.json"
    return path if path.is_file() else None


def _config_or_empty(folder):
    return read_config(folder) if (Path(folder) / "config.json").is_file() else {}


# ---- mamba_ssm MambaLMHeadModel ------------------------------------------------------------------------------------


def _mamba_ssm_encoder(folder, state_dict=None):
    """(config, retriever state dict, files) of a mamba_ssm folder; `state_dict` when already read and unwrapped."""
    config_dict = read_config(folder)
    if not is_mamba_ssm_config(config_dict):
        raise ValueError(f"{folder}/config.json is not a mamba_ssm MambaLMHeadModel config (d_model, n_layer, ...).")
    config = config_from_mamba_ssm(config_dict)
    state_dict = read_state_dict(folder) if state_dict is None else state_dict
    mapped = map_mamba_ssm_keys(state_dict, config, tie_embeddings=config_dict.get("tie_embeddings", True))
    return config, mapped, [Path(folder) / "config.json", *weight_files(folder)]


def read_mamba_ssm(folder):
    config, state_dict, files = _mamba_ssm_encoder(folder)
    return Source("mamba_ssm", config, {SHARED: state_dict}, files, tokenizer_file=tokenizer_file(folder))


def detect_mamba_ssm(folder):
    return is_mamba_ssm_config(_config_or_empty(folder))


# ---- tevatron v1 around mamba_ssm ----------------------------------------------------------------------------------


def _has_untied_folders(folder):
    return all((Path(folder) / name).is_dir() for name in UNTIED_FOLDERS.values())


def read_tevatron(folder):
    folder = Path(folder)
    if _has_untied_folders(folder):
        encoders, files, configs = {}, [], {}
        for role, name in UNTIED_FOLDERS.items():
            sub = folder / name
            configs[role], encoders[role], sub_files = _mamba_ssm_encoder(
                sub, strip_wrapper_prefixes(read_state_dict(sub))
            )
            files += sub_files
        if configs["query"].to_dict() != configs["document"].to_dict():
            raise ValueError(
                f"{UNTIED_FOLDERS['query']}/config.json and {UNTIED_FOLDERS['document']}/config.json "
                "describe different models; both encoders must have the same shape."
            )
        tokenizer = tokenizer_file(folder) or tokenizer_file(folder / UNTIED_FOLDERS["query"])
        return Source(
            "tevatron",
            configs["query"],
            encoders,
            files,
            tokenizer_file=tokenizer,
            notes=[
                f"untied encoders: {UNTIED_FOLDERS['query']}/ -> query/, {UNTIED_FOLDERS['document']}/ -> document/"
            ],
        )
    parts = split_encoders(read_state_dict(folder))
    encoders, notes, files = {}, [], []
    for role, state_dict in parts.items():
        config, encoders[role], files = _mamba_ssm_encoder(folder, state_dict)
    if set(parts) == {SHARED}:
        notes.append("one encoder (tied, or lm_q and lm_p equal: one kept)")
    else:
        notes.append("lm_q and lm_p differ: untied encoders, lm_q -> query/, lm_p -> document/")
    return Source("tevatron", config, encoders, files, tokenizer_file=tokenizer_file(folder), notes=notes)


def detect_tevatron(folder):
    if _has_untied_folders(folder):
        return True
    return detect_mamba_ssm(folder) and has_tevatron_keys(weight_keys(folder))


# ---- transformers MambaForCausalLM / Mamba2ForCausalLM (*-hf) ------------------------------------------------------


def read_transformers(folder):
    folder = Path(folder)
    hf_config = read_config(folder)
    config = config_from_transformers(hf_config)
    state_dict = map_transformers_keys(read_state_dict(folder), hf_config)
    return Source(
        "transformers",
        config,
        {SHARED: state_dict},
        [folder / "config.json", *weight_files(folder)],
        tokenizer_file=tokenizer_file(folder),
    )


def detect_transformers(folder):
    return _config_or_empty(folder).get("model_type") in ("mamba", "mamba2")
