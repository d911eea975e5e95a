"""`mamba-retrieval synth CORPUS OUT`: link-based SPScanner training data from your documents, with any
OpenAI-compatible LLM (the steps: modeling/scanner/synth_run.py)."""

import sys
from pathlib import Path

from mamba_retrieval.modeling.cli.llm_options import add_llm_arguments, client_from_args
from mamba_retrieval.modeling.scanner import synthetic_data as sd
from mamba_retrieval.modeling.scanner.synthetic_data import LLM_STEPS, STEPS


def register(subparsers):
    parser = subparsers.add_parser(
        "synth",
        help="make SPScanner training data from documents with an LLM (link-based generation)",
        description="Link-based synthetic training data for SPScanner (the paper's best method): for a random chunk "
        "of each document an LLM names the connected sentences, writes a question from the farthest "
        "connection and picks the sentences needed to answer it. Steps resume in OUT; LLM answers are "
        "cached in OUT/llm_cache. The result, OUT/train.jsonl, is what `train-scanner --data` reads.",
    )
    parser.add_argument(
        "corpus",
        help="documents: a JSONL file (`_id`/`id`, `text`, optional `title`) or a BEIR folder with corpus.jsonl",
    )
    parser.add_argument("out", help="output folder (steps resume in it)")
    parser.add_argument("--qrels", help="only the documents judged in this BEIR qrels TSV (e.g. a train split)")
    parser.add_argument("--limit", type=int, help="only the first N documents")
    parser.add_argument(
        "--chunks-per-document", type=int, default=1, help="source chunks sampled per document (the original: 1)"
    )
    parser.add_argument("--min-doc-tokens", type=int, default=1000, help="shortest document kept (GPT-NeoX tokens)")
    parser.add_argument("--max-doc-tokens", type=int, default=120_000, help="longest document kept (GPT-NeoX tokens)")
    parser.add_argument(
        "--min-english-share",
        type=float,
        default=0.2,
        help="documents with fewer of their words among the 50 commonest English words are left out",
    )
    parser.add_argument(
        "--min-range",
        type=int,
        default=sd.MIN_CONNECTION_RANGE,
        help="shortest connection range (units from the chunk's far end)",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the chunk sampling")
    parser.add_argument("--until", choices=STEPS, default="train", help="stop after this step")
    add_llm_arguments(parser)
    parser.set_defaults(func=run)


def run(args):
    from mamba_retrieval.modeling.scanner.llm_client import LLMError
    from mamba_retrieval.modeling.scanner.synth_run import SynthRun, read_corpus

    if args.chunks_per_document < 1 or args.min_doc_tokens > args.max_doc_tokens:
        raise ValueError("--chunks-per-document must be >= 1 and --min-doc-tokens <= --max-doc-tokens.")
    if args.min_range < sd.MIN_CONNECTION_RANGE:  # closer, the chunk's and the selected unit's context overlap
        raise ValueError(
            f"--min-range must be >= {sd.MIN_CONNECTION_RANGE} (got {args.min_range}): a connected unit "
            "nearer the chunk shares context sentences with it, and the needed-sentences step needs two "
            "separate parts."
        )
    settings = {
        "corpus": str(Path(args.corpus).resolve()),
        "qrels": args.qrels,
        "limit": args.limit,
        "chunks_per_document": args.chunks_per_document,
        "min_tokens": args.min_doc_tokens,
        "max_tokens": args.max_doc_tokens,
        "min_english_share": args.min_english_share,
        "min_range": args.min_range,
        "seed": args.seed,
    }
    out = Path(args.out)
    needs_llm = any(
        not (out / f"{step}.jsonl").exists() for step in STEPS[: STEPS.index(args.until) + 1] if step in LLM_STEPS
    )
    client = client_from_args(args, out / "llm_cache") if needs_llm else None
    documents = None if (out / "documents.jsonl").exists() else read_corpus(args.corpus, args.qrels, args.limit)
    synth = SynthRun(out, settings, client, documents)
    try:
        synth.run(args.until)
    except LLMError as error:
        print(f"mamba-retrieval synth: error: {error}", file=sys.stderr)
        return 1
    if client is not None:
        print("LLM: " + ", ".join(f"{k} {v}" for k, v in client.usage().items()))
    print(f"wrote {out / (args.until + '.jsonl')}; counts in {out / 'stats.json'}")
