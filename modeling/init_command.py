"""`mamba-retrieval init BASE OUT`: a retriever Hub folder to start training from."""

from pathlib import Path

import torch

from .base_models import NAMED_SIZES, load_base
from .hub_folder import check_output_dir, write_hub_folder
from .tokenizer import ENDOFTEXT, VENDORED_TOKENIZER, build_tokenizer, check_eos_fits

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def init_retriever(base, out_dir, *, eos_token=ENDOFTEXT, max_seq_length=512, prompts=None, dtype=None, seed=0,
                   force=False):
    """Write a retriever folder built from `base` (a named size or a transformers `*-hf` folder)."""
    check_output_dir(out_dir, force)  # before any slow loading
    tokenizer_file = Path(base) / "tokenizer.json" if base not in NAMED_SIZES else VENDORED_TOKENIZER
    if not tokenizer_file.is_file():
        tokenizer_file = VENDORED_TOKENIZER
    tokenizer = build_tokenizer(eos_token, model_max_length=max_seq_length, tokenizer_file=tokenizer_file)
    model = load_base(base, seed=seed, eos_token_id=tokenizer.eos_token_id)
    check_eos_fits(tokenizer, model.config.vocab_size)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    if dtype is not None:
        model = model.to(DTYPES[dtype])
    return write_hub_folder(model, tokenizer, out_dir, max_seq_length=max_seq_length, prompts=prompts, force=force)


def register(subparsers):
    parser = subparsers.add_parser(
        "init", help="build a retriever Hub folder from a base model",
        description="Build a retriever Hub folder from BASE: a named size for a random model "
                    f"({', '.join(NAMED_SIZES)}) or a transformers *-hf folder (MambaForCausalLM / "
                    "Mamba2ForCausalLM, with its tokenizer).")
    parser.add_argument("base", help="named size or *-hf folder")
    parser.add_argument("out", help="output folder (must not exist or be empty, unless --force)")
    parser.add_argument("--eos-token", default=ENDOFTEXT,
                        help="token appended to every text and pooled: <|endoftext|> (id 0, default) or <EOS> "
                             "(added as id 50277, the paper's recipe)")
    parser.add_argument("--max-seq-length", type=int, default=512, help="tokens per text, EOS included")
    parser.add_argument("--query-prompt", default="", help="text prepended to queries")
    parser.add_argument("--document-prompt", default="", help="text prepended to documents")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="weight dtype (default: the base's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of a random model")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run)


def run(args):
    out = init_retriever(args.base, args.out, eos_token=args.eos_token, max_seq_length=args.max_seq_length,
                         prompts={"query": args.query_prompt, "document": args.document_prompt}, dtype=args.dtype,
                         seed=args.seed, force=args.force)
    print(f"wrote {out}")
