"""`mamba-retrieval scan MODEL --question ... --document FILE`: the sentences of FILE an LLM should read."""

import json
import sys
from pathlib import Path

from mamba_retrieval.modeling.cli.arguments import count_or_fraction
from mamba_retrieval.modeling.pretrained import locate_model


def register(subparsers):
    parser = subparsers.add_parser(
        "scan",
        help="score the sentences of a document against a question with an SPScanner folder",
        description="Segment DOCUMENT into sentence units, score each against the question with an SPScanner "
        "model (windows with 50% overlap for long documents) and print the best units in document "
        "order, then the context string an LLM would read.",
    )
    parser.add_argument("model", help="SPScanner Hub folder (mamba-retrieval convert / write_scanner_folder)")
    parser.add_argument("--question", required=True, help="the question")
    parser.add_argument("--document", required=True, help="text file (UTF-8), or - for standard input")
    parser.add_argument(
        "--top-k",
        type=count_or_fraction,
        default=10,
        help="units to keep: a count (10), or a fraction < 1 meaning max(10, ceil(n * k))",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(func=run)


def read_document(path):
    if path == "-":
        return sys.stdin.read()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Document {path} does not exist or is not a file.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text ({error}); convert it first.") from error


def run(args):
    from mamba_retrieval.modeling.scanner import SentenceScanner

    document = read_document(args.document)
    top_k = int(args.top_k) if args.top_k >= 1 else args.top_k
    result = SentenceScanner.from_pretrained(locate_model(args.model, "MODEL")).scan(
        args.question, document, top_k=top_k
    )
    if args.json:
        print(
            json.dumps(
                {
                    "n_units": len(result.units),
                    "selected": [
                        {"index": i, "score": s, "text": result.units[i]} for i, s in zip(result.indices, result.scores)
                    ],
                    "context": result.context,
                },
                ensure_ascii=False,
            )
        )
        return
    print(f"{len(result.indices)} of {len(result.units)} sentence units, in document order:")
    for index, score in zip(result.indices, result.scores):
        print(f"[{index}] {score:+.4f}  {result.units[index].strip()}")
    print("\n--- context ---")
    print(result.context)
