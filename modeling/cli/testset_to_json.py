"""`mamba-retrieval testset-to-json PICKLE OUT`: a published SPScanner test set or logits pickle, once, as JSON."""

import json
from pathlib import Path

from mamba_retrieval.modeling.data_files import atomic_file


def register(subparsers):
    parser = subparsers.add_parser(
        "testset-to-json",
        help="convert a published SPScanner test-set or logits pickle to JSON (plain data only)",
        description="Read PICKLE as plain data (dicts, lists, strings, numbers, numpy arrays; a pickle naming "
        "anything else is refused and nothing in it runs) and write it as JSON, which `answer`, `score-testset` "
        "and `answer --logits` read. Tuple keys become their str(), as SPScanner's pipeline reads them back.",
    )
    parser.add_argument("pickle", help="the published .pickle / .pkl file")
    parser.add_argument("out", help="the JSON file to write")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run)


def run(args):
    from mamba_retrieval.eval.spscanner_testset import PICKLE_SUFFIXES, as_json_data, read_published

    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists; choose another path or pass --force.")
    if Path(args.pickle).suffix not in PICKLE_SUFFIXES:
        raise ValueError(f"{args.pickle} is not a pickle (.pickle or .pkl); JSON files need no conversion.")
    data = as_json_data(read_published(args.pickle, "Pickle"))
    with atomic_file(out) as handle:
        handle.write(json.dumps(data, ensure_ascii=False))
    print(f"wrote {out}: {sum(len(v) for v in data.values() if isinstance(v, dict))} datapoints")
