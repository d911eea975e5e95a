"""Named model sizes: the published state-spaces shapes, and tiny ones for tests and CPU distillation. Plain data,
so the CLI lists them in `--help` without importing torch; `conversion.base_models.random_model` builds one."""

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
