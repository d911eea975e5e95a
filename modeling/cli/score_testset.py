"""`mamba-retrieval score-testset MODEL TESTSET OUTPUT`: SPScanner logits of a published test set, for `answer
--logits` or SPScanner's own RAG pipeline (eval/spscanner_testset.py)."""

from pathlib import Path

from mamba_retrieval.modeling.pretrained import locate_model


def register(subparsers):
    parser = subparsers.add_parser(
        "score-testset",
        help="score an SPScanner test set's sentences; the logits file `answer --logits` reads",
        description="Score every datapoint of TESTSET (SPScanner's published format) with an SPScanner folder and "
        "write the per-sentence logits file of their RAG pipeline.",
    )
    parser.add_argument("model", help="SPScanner Hub folder")
    parser.add_argument("testset", help="test-set file (.pickle / .pkl, or JSON)")
    parser.add_argument("output", help="logits file (.pickle / .pkl for their pipeline, or .json)")
    parser.add_argument(
        "--window-size",
        type=int,
        help="document tokens per window (default: the model's config; the original evaluate.py used 256000)",
    )
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    parser.set_defaults(func=run)


def run(args):
    from mamba_retrieval.eval.spscanner_testset import read_testset, score_testset, write_logits
    from mamba_retrieval.modeling.scanner.sentence_scanner import SentenceScanner

    if Path(args.output).exists() and not args.force:
        raise FileExistsError(f"{args.output} exists; choose another path or pass --force.")
    data = read_testset(args.testset)
    logits = score_testset(SentenceScanner.from_pretrained(locate_model(args.model, "MODEL")), data, args.window_size)
    write_logits(logits, args.output)
    print(f"wrote {args.output}: {sum(len(v) for v in logits.values())} datapoints")
