"""The GPT-NeoX-20B tokenizer of every Mamba checkpoint, set up so that it appends the EOS itself.

The EOS is added by the tokenizer's post-processor (a `TemplateProcessing` rule stored in `tokenizer.json`), so every
caller (raw transformers, sentence-transformers, MTEB) sees `text + EOS`, truncation keeps the EOS (the rule is applied
after truncation, which reserves room for it), and the rule survives `save_pretrained` / `from_pretrained`.
"""

from pathlib import Path

from tokenizers import Tokenizer, processors

VENDORED_TOKENIZER = Path(__file__).parent / "tokenizer_files" / "tokenizer.json"
ENDOFTEXT = "<|endoftext|>"  # id 0 in GPT-NeoX-20B
PADDING = "<|padding|>"  # id 1
PAPER_EOS = "<EOS>"  # the Mamba Retriever recipe's added token: id 50277, inside the 50,280-row Mamba-1 embedding
DEFAULT_MAX_LENGTH = 8192


def build_tokenizer(eos_token=ENDOFTEXT, model_max_length=DEFAULT_MAX_LENGTH, tokenizer_file=VENDORED_TOKENIZER):
    """A fast tokenizer that appends `eos_token` to every text; right padding and truncation.

    `eos_token` is `<|endoftext|>` (id 0) by default; any other string is added as a special token if the vocabulary
    lacks it (`<EOS>` gets id 50277).
    """
    backend = Tokenizer.from_file(str(tokenizer_file))
    if backend.token_to_id(eos_token) is None:
        backend.add_special_tokens([eos_token])
    return wrap_backend(backend, eos_token, model_max_length)


def wrap_backend(backend, eos_token, model_max_length):
    """Install the append-EOS rule on a `tokenizers.Tokenizer` and wrap it for transformers."""
    eos_id = backend.token_to_id(eos_token)
    if eos_id is None:
        raise ValueError(f"EOS token {eos_token!r} is not in the tokenizer's vocabulary.")
    backend.no_padding()
    backend.no_truncation()
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"$A:0 {eos_token}:0",
                pair=f"$A:0 {eos_token}:0 $B:1 {eos_token}:1",
                special_tokens=[(eos_token, eos_id)],
            ),
        ]
    )
    pad_token = PADDING if backend.token_to_id(PADDING) is not None else eos_token
    return _fast_tokenizer(backend, eos_token, pad_token, model_max_length, ["input_ids", "attention_mask"])


def build_plain_tokenizer(model_max_length, tokenizer_file=VENDORED_TOKENIZER):
    """The plain GPT-NeoX-20B tokenizer: no BOS/EOS added, offsets kept untrimmed (so that segmentation can map
    characters to tokens), input ids only."""
    backend = Tokenizer.from_file(str(tokenizer_file))
    backend.no_padding()
    backend.no_truncation()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    return _fast_tokenizer(backend, ENDOFTEXT, ENDOFTEXT, model_max_length, ["input_ids"])


def _fast_tokenizer(backend, eos_token, pad_token, model_max_length, model_input_names):
    """transformers' wrapper around a `tokenizers.Tokenizer`: right padding and truncation, spaces kept as they are."""
    # imported here: the CLI reads this module's token names for `--help`, which must not wait for transformers
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=eos_token,
        bos_token=ENDOFTEXT,
        unk_token=ENDOFTEXT,
        pad_token=pad_token,
        padding_side="right",
        truncation_side="right",
        model_max_length=model_max_length,
        model_input_names=model_input_names,
        clean_up_tokenization_spaces=False,
    )


def appends_eos(tokenizer):
    """True when the tokenizer adds its EOS at the end of a plain text (the contract every Hub folder keeps)."""
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[-1] == tokenizer.eos_token_id


def check_eos_fits(tokenizer, vocab_size):
    """The EOS must be a row of the model's embedding (`<EOS>`, id 50277, fits the padded 50,280 / 50,288 rows)."""
    if tokenizer.eos_token_id >= vocab_size:
        raise ValueError(
            f"EOS {tokenizer.eos_token!r} has id {tokenizer.eos_token_id}, beyond the model's "
            f"{vocab_size} embedding rows; choose another --eos-token."
        )
