"""`mamba-retrieval init BASE OUT`: a retriever Hub folder to start training from."""

from mamba_retrieval.modeling.cli.arguments import positive_int
from mamba_retrieval.modeling.dtypes import DTYPES
from mamba_retrieval.modeling.sizes import NAMED_SIZES
from mamba_retrieval.modeling.tokenizer import ENDOFTEXT


def register(subparsers):
    parser = subparsers.add_parser(
        "init",
        help="build a retriever Hub folder from a base model",
        description="Build a retriever Hub folder from BASE: a named size for a random model "
        f"({', '.join(NAMED_SIZES)}) or a transformers *-hf folder (MambaForCausalLM / "
        "Mamba2ForCausalLM, with its tokenizer).",
    )
    parser.add_argument("base", help="named size or *-hf folder")
    parser.add_argument("out", help="output folder (must not exist or be empty, unless --force)")
    parser.add_argument(
        "--eos-token",
        default=ENDOFTEXT,
        help="token appended to every text and pooled: <|endoftext|> (id 0, default) or <EOS> "
        "(added as id 50277, the paper's recipe)",
    )
    parser.add_argument("--max-seq-length", type=positive_int, default=512, help="tokens per text, EOS included")
    parser.add_argument("--query-prompt", default="", help="text prepended to queries")
    parser.add_argument("--document-prompt", default="", help="text prepended to documents")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="weight dtype (default: the base's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of a random model")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run)


def run(args):
    from mamba_retrieval.conversion.base_models import init_retriever

    out = init_retriever(
        args.base,
        args.out,
        eos_token=args.eos_token,
        max_seq_length=args.max_seq_length,
        prompts={"query": args.query_prompt, "document": args.document_prompt},
        dtype=args.dtype,
        seed=args.seed,
        force=args.force,
    )
    print(f"wrote {out}")
