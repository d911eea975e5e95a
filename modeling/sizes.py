"""Named model sizes: the published state-spaces shapes, and tiny ones for tests and CPU distillation."""

import torch

from mamba_retrieval.modeling.configuration_mamba_retrieval import MambaRetrievalConfig
from mamba_retrieval.modeling.modeling_mamba_retrieval import MambaForRetrieval

# The published state-spaces shapes (vocab padded as mamba_ssm pads it: to 8 for Mamba-1, to 16 for Mamba-2).
MAMBA1_VOCAB, MAMBA2_VOCAB = 50280, 50288
NAMED_SIZES = {
    "tiny": dict(backbone="mamba", hidden_size=64, num_hidden_layers=2, vocab_size=MAMBA1_VOCAB),
    # 12.6M: the widest 4-layer Mamba-1 whose fp16 Hub folder (with the 2.5 MB tokenizer) stays under 30 MB
    "mini": dict(backbone="mamba", hidden_size=224, num_hidden_layers=4, vocab_size=MAMBA1_VOCAB),
    "small": dict(backbone="mamba", hidden_size=256, num_hidden_layers=4, vocab_size=MAMBA1_VOCAB),  # 14.6M
    "130m": dict(backbone="mamba", hidden_size=768, num_hidden_layers=24, vocab_size=MAMBA1_VOCAB),
    "370m": dict(backbone="mamba", hidden_size=1024, num_hidden_layers=48, vocab_size=MAMBA1_VOCAB),
    "790m": dict(backbone="mamba", hidden_size=1536, num_hidden_layers=48, vocab_size=MAMBA1_VOCAB),
    "mamba2-tiny": dict(
        backbone="mamba2",
        hidden_size=64,
        num_hidden_layers=2,
        head_dim=16,
        state_size=16,
        chunk_size=64,
        vocab_size=MAMBA2_VOCAB,
    ),
    "mamba2-130m": dict(backbone="mamba2", hidden_size=768, num_hidden_layers=24, vocab_size=MAMBA2_VOCAB),
    "mamba2-370m": dict(backbone="mamba2", hidden_size=1024, num_hidden_layers=48, vocab_size=MAMBA2_VOCAB),
    "mamba2-780m": dict(backbone="mamba2", hidden_size=1536, num_hidden_layers=48, vocab_size=MAMBA2_VOCAB),
    "mamba2-1.3b": dict(backbone="mamba2", hidden_size=2048, num_hidden_layers=48, vocab_size=MAMBA2_VOCAB),
}


def random_model(name, seed=0, eos_token_id=0):
    """A randomly initialised retriever of a named size (see NAMED_SIZES)."""
    if name not in NAMED_SIZES:
        raise ValueError(f"Unknown size {name!r}; choose one of {', '.join(NAMED_SIZES)}, or pass a folder.")
    config = MambaRetrievalConfig(**NAMED_SIZES[name], eos_token_id=eos_token_id)
    torch.manual_seed(seed)
    return MambaForRetrieval(config).eval()
