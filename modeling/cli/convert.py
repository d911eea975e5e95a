"""`mamba-retrieval convert SRC OUT`: a research or base checkpoint -> a Hub folder, strict and verified."""

from pathlib import Path

from mamba_retrieval.conversion.format_names import FORMAT_DESCRIPTIONS
from mamba_retrieval.modeling.cli.arguments import positive_int
from mamba_retrieval.modeling.dtypes import DTYPES
from mamba_retrieval.modeling.tokenizer import ENDOFTEXT


def register(subparsers):
    parser = subparsers.add_parser(
        "convert",
        help="convert a research or base checkpoint into a retriever Hub folder",
        description="Convert the checkpoint folder SRC into a retriever Hub folder OUT, strictly (every missing or "
        "unexpected key is an error) and verified (OUT is reloaded and compared with transformers' "
        "MambaModel / Mamba2Model on the source weights). Formats: "
        + "; ".join(f"{name}: {description}" for name, description in FORMAT_DESCRIPTIONS.items())
        + ".",
    )
    parser.add_argument("src", help="checkpoint folder")
    parser.add_argument("out", help="output folder (must not exist or be empty, unless --force)")
    parser.add_argument("--format", choices=list(FORMAT_DESCRIPTIONS), help="source format (default: detected)")
    parser.add_argument(
        "--eos-token",
        default=ENDOFTEXT,
        help="token appended to every text and pooled: <|endoftext|> (id 0, default) or <EOS> "
        "(added as id 50277, the Mamba Retriever recipe)",
    )
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="weight dtype (default: the source's)")
    parser.add_argument("--max-seq-length", type=positive_int, default=512, help="tokens per text, EOS included")
    parser.add_argument("--query-prompt", default="", help="text prepended to queries")
    parser.add_argument("--document-prompt", default="", help="text prepended to documents")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run)


def run(args):
    from mamba_retrieval.conversion.convert import FORMATS, convert_checkpoint

    report = convert_checkpoint(
        args.src,
        args.out,
        format=args.format,
        eos_token=args.eos_token,
        dtype=args.dtype,
        max_seq_length=args.max_seq_length,
        force=args.force,
        prompts={"query": args.query_prompt, "document": args.document_prompt},
    )
    print("\n".join(FORMATS[report["format"]].describe(report)))
    print(f"wrote {Path(args.out).absolute()}")
