"""Check a written Hub folder against the source weights, run by transformers' own MambaModel / Mamba2Model.

The folder is loaded from disk the way users load it (`AutoModel.from_pretrained(..., trust_remote_code=True)`,
offline, its own remote code and tokenizer); the reference is transformers' backbone holding the renamed source
weights (cast to the output dtype, so that a bf16 / fp16 conversion is checked against what it should hold). Both run
in float32 on a few fixed texts; the figure is the largest absolute difference of the last-token hidden state, and
it must be <= 1e-5 (times the largest reference value where that exceeds 1).
"""

import torch
from transformers import AutoModel, AutoTokenizer, Mamba2Config, Mamba2Model, MambaConfig, MambaModel

PARITY_TEXTS = (
    "Mamba is a selective state-space model.",
    "what is a state-space model?",
    "",
    "Retrieval with long documents: " + "the quick brown fox jumps over the lazy dog, " * 12 + "and stops.",
)
TOLERANCE = 1e-5
REPORT_FILE = "conversion.json"  # every converted folder's report: source hashes, format, parity


def transformers_reference(config, state_dict):
    """transformers' MambaModel / Mamba2Model of `config` holding `state_dict` (retriever keys), float32."""
    c = config
    common = dict(
        vocab_size=c.vocab_size,
        hidden_size=c.hidden_size,
        num_hidden_layers=c.num_hidden_layers,
        state_size=c.state_size,
        expand=c.expand,
        conv_kernel=c.conv_kernel,
        use_bias=c.use_bias,
        use_conv_bias=c.use_conv_bias,
        layer_norm_epsilon=c.layer_norm_epsilon,
        residual_in_fp32=c.residual_in_fp32,
    )
    if c.backbone == "mamba":
        reference = MambaModel(MambaConfig(time_step_rank=c.time_step_rank, **common))
    else:
        reference = Mamba2Model(
            Mamba2Config(
                head_dim=c.head_dim, num_heads=c.num_heads, n_groups=c.n_groups, chunk_size=c.chunk_size, **common
            )
        )
    weights = {key.removeprefix("backbone."): value.float() for key, value in state_dict.items()}
    reference.load_state_dict(weights, strict=True)
    return reference.float().eval()


@torch.no_grad()
def compare_with_reference(folder, config, state_dict, dtype, subfolder=""):
    """{"max_abs_diff", "reference_max_abs"} over the last-token hidden states of PARITY_TEXTS, both in float32.

    state_dict: the source weights under retriever keys; dtype: the dtype the folder was written in. The reference
    runs first and is freed before the folder is loaded, so that only one extra copy of the model is in memory.
    """
    kwargs = {"subfolder": subfolder} if subfolder else {}
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True, local_files_only=True, **kwargs)
    inputs = [tokenizer(text, return_tensors="pt")["input_ids"] for text in PARITY_TEXTS]
    reference = transformers_reference(config, {key: value.to(dtype) for key, value in state_dict.items()})
    expected = [reference(input_ids=ids).last_hidden_state[0, -1] for ids in inputs]
    del reference
    loaded = AutoModel.from_pretrained(
        folder, trust_remote_code=True, local_files_only=True, dtype=torch.float32, **kwargs
    ).eval()
    diffs = [
        (loaded(input_ids=ids).last_hidden_state[0, -1] - want).abs().max().item()
        for ids, want in zip(inputs, expected)
    ]
    return {"max_abs_diff": max(diffs), "reference_max_abs": max(want.abs().max().item() for want in expected)}


def within_tolerance(result):
    """|diff| <= 1e-5, relative to the states' scale once they exceed 1 (float32 rounding grows with magnitude)."""
    return result["max_abs_diff"] <= TOLERANCE * max(1.0, result["reference_max_abs"])
