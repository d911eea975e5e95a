"""tevatron (v1) training output around a mamba_ssm `MambaLMHeadModel`.

tevatron's `DenseModel` holds the query encoder as `lm_q` and the passage encoder as `lm_p` (one module under both
names when the encoders are tied). `DenseModel.save` writes `lm_q.save_pretrained(out)` when tied (a plain mamba_ssm
folder) and `out/query_model/` + `out/passage_model/` when untied (`--untie_encoder`). A checkpoint of the whole
`DenseModel` holds `lm_q.*` and `lm_p.*` keys, possibly behind `module.` (DataParallel / DistributedDataParallel)
and `_orig_mod.` (torch.compile).
"""

import torch

from mamba_retrieval.conversion.checkpoint_files import CheckpointKeyError
from mamba_retrieval.conversion.mamba_ssm_format import format_keys

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
ENCODER_PREFIXES = {"lm_q.": "query", "lm_p.": "document"}  # tevatron name -> retriever role
UNTIED_FOLDERS = {"query": "query_model", "document": "passage_model"}  # retriever role -> tevatron folder
SHARED = "shared"  # the role of the one encoder of a tied model


def has_tevatron_keys(keys):
    return any(key.startswith(WRAPPER_PREFIXES + tuple(ENCODER_PREFIXES)) for key in keys)


def strip_wrapper_prefixes(state_dict):
    """Remove `module.` and `_orig_mod.` (in any order, any number of times) from the front of every key."""
    stripped = {}
    for key, value in state_dict.items():
        name = key
        while name.startswith(WRAPPER_PREFIXES):
            name = name.split(".", 1)[1]
        if name in stripped:
            raise CheckpointKeyError(
                f"Two keys become {name!r} once the wrapper prefixes {WRAPPER_PREFIXES} are removed; "
                "the checkpoint mixes wrapped and unwrapped weights."
            )
        stripped[name] = value
    return stripped


def split_encoders(state_dict):
    """{role: state dict} of the encoders in a (possibly wrapped) tevatron state dict.

    `{"shared": ...}` when there is one encoder: no `lm_q.`/`lm_p.` prefixes, or equal tensors under both (tied
    encoders: one is kept). `{"query": ..., "document": ...}` when `lm_q` and `lm_p` hold different weights.
    """
    state_dict = strip_wrapper_prefixes(state_dict)
    prefixes = tuple(ENCODER_PREFIXES)
    if not any(key.startswith(prefixes) for key in state_dict):
        return {SHARED: state_dict}
    others = [key for key in state_dict if not key.startswith(prefixes)]
    if others:
        raise CheckpointKeyError(
            f"Keys outside the query (lm_q.) and passage (lm_p.) encoders, which a retriever does not "
            f"have (a pooler?): {format_keys(others)}."
        )
    parts = {
        role: {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
        for prefix, role in ENCODER_PREFIXES.items()
    }
    query, document = parts["query"], parts["document"]
    if not query or not document:
        return {SHARED: query or document}
    if set(query) != set(document):
        raise CheckpointKeyError(
            f"lm_q and lm_p hold different keys: only in lm_q: {format_keys(set(query) - set(document))}; "
            f"only in lm_p: {format_keys(set(document) - set(query))}."
        )
    if all(query[k].shape == document[k].shape and torch.equal(query[k], document[k]) for k in query):
        return {SHARED: query}
    return parts
