"""Starting points for a retriever: a named random size, a retriever Hub folder, or a transformers `*-hf` LM folder;
and `init_retriever`, which writes one of them as a retriever Hub folder."""

import json
from pathlib import Path

import torch

from mamba_retrieval.conversion.transformers_lm import load_transformers_lm
from mamba_retrieval.modeling.configuration_mamba_retrieval import MambaRetrievalConfig
from mamba_retrieval.modeling.dtypes import torch_dtype
from mamba_retrieval.modeling.hub_folder import check_output_dir, write_hub_folder
from mamba_retrieval.modeling.modeling_mamba_retrieval import MambaForRetrieval
from mamba_retrieval.modeling.sizes import NAMED_SIZES
from mamba_retrieval.modeling.tokenizer import ENDOFTEXT, VENDORED_TOKENIZER, build_tokenizer, check_eos_fits


def random_model(name, seed=0, eos_token_id=0):
    """A randomly initialised retriever of a named size (see NAMED_SIZES)."""
    if name not in NAMED_SIZES:
        raise ValueError(f"Unknown size {name!r}; choose one of {', '.join(NAMED_SIZES)}, or pass a folder.")
    config = MambaRetrievalConfig(**NAMED_SIZES[name], eos_token_id=eos_token_id)
    torch.manual_seed(seed)
    return MambaForRetrieval(config).eval()


def load_base(base, seed=0, eos_token_id=0):
    """The retriever for `base`: a named size, a retriever Hub folder (to train further), or a transformers `*-hf`
    folder (`MambaForCausalLM` / `Mamba2ForCausalLM`)."""
    if base in NAMED_SIZES:
        return random_model(base, seed=seed, eos_token_id=eos_token_id)
    folder = Path(base)
    if not folder.is_dir():
        raise FileNotFoundError(f"{base!r} is neither a named size ({', '.join(NAMED_SIZES)}) nor a folder.")
    config_file = folder / "config.json"
    if (
        config_file.is_file()
        and json.loads(config_file.read_text()).get("model_type") == MambaRetrievalConfig.model_type
    ):
        return MambaForRetrieval.from_pretrained(folder, dtype=torch.float32)
    return load_transformers_lm(folder, eos_token_id=eos_token_id)


def is_retriever_folder(path):
    """True for a folder that sentence-transformers loads as it is (a Hub folder written by this package)."""
    return str(path) not in NAMED_SIZES and (Path(path) / "modules.json").is_file()


def init_retriever(
    base, out_dir, *, eos_token=ENDOFTEXT, max_seq_length=512, prompts=None, dtype=None, seed=0, force=False
):
    """Write a retriever folder built from `base` (a named size or a transformers `*-hf` folder)."""
    check_output_dir(out_dir, force, sources=[base] if base not in NAMED_SIZES else [])  # before any slow loading
    tokenizer_file = Path(base) / "tokenizer.json" if base not in NAMED_SIZES else VENDORED_TOKENIZER
    if not tokenizer_file.is_file():
        tokenizer_file = VENDORED_TOKENIZER
    tokenizer = build_tokenizer(eos_token, model_max_length=max_seq_length, tokenizer_file=tokenizer_file)
    model = load_base(base, seed=seed, eos_token_id=tokenizer.eos_token_id)
    check_eos_fits(tokenizer, model.config.vocab_size)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    if dtype is not None:
        model = model.to(torch_dtype(dtype))
    return write_hub_folder(model, tokenizer, out_dir, max_seq_length=max_seq_length, prompts=prompts, force=force)
