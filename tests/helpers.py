"""What the tests share: tiny models and Hub folders, a fresh offline interpreter, the paths of the checkout and of
the offline data."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from mamba_retrieval.modeling.configuration_mamba_retrieval import MambaRetrievalConfig
from mamba_retrieval.modeling.data_files import DATA_ENV
from mamba_retrieval.modeling.hub_folder import write_hub_folder
from mamba_retrieval.modeling.modeling_mamba_retrieval import MambaForRetrieval
from mamba_retrieval.modeling.tokenizer import build_tokenizer

REPO = Path(__file__).resolve().parents[1]
# the offline data: $MAMBA_RETRIEVAL_DATA, else the shared/data folder beside the checkout
DATA = Path(os.environ.get(DATA_ENV) or REPO.parent / "shared" / "data")
BACKBONES = ("mamba", "mamba2")
PROMPTS = {"query": "query: ", "document": "passage: "}
TEXTS = ["Mamba is a selective state-space model.", "hello", "", "A longer text " * 7 + "that ends here."]


def tiny_config(backbone, **overrides):
    """Tiny shapes that still exercise every code path (several Mamba-2 chunks and heads, two groups' worth)."""
    if backbone == "mamba":
        fields = dict(vocab_size=50280, hidden_size=32, num_hidden_layers=2, state_size=8)
    else:
        fields = dict(vocab_size=50288, hidden_size=32, num_hidden_layers=2, state_size=8, head_dim=16, chunk_size=8)
    return MambaRetrievalConfig(backbone=backbone, **{**fields, **overrides})


def tiny_model(backbone, seed=0, **overrides):
    torch.manual_seed(seed)
    return MambaForRetrieval(tiny_config(backbone, **overrides)).eval()


def write_tiny_folder(path, backbone, eos_token="<|endoftext|>", max_seq_length=64, seed=0):
    tokenizer = build_tokenizer(eos_token, model_max_length=max_seq_length)
    model = tiny_model(backbone, seed=seed, eos_token_id=tokenizer.eos_token_id)
    write_hub_folder(model, tokenizer, path, max_seq_length=max_seq_length, prompts=PROMPTS)
    return model, tokenizer


def run_fresh_python(code, tmp_path, offline=True):
    """Run `code` in a new interpreter (nothing imported, offline, own module cache); returns the completed process."""
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf_home"), HF_MODULES_CACHE=str(tmp_path / "hf_modules"))
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300
    )


def embed(model, tokenizer, texts, padding_side="right"):
    tokenizer.padding_side = padding_side
    try:
        batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = "right"
    with torch.no_grad():
        return model(**batch).sentence_embedding
