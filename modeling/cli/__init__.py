"""The `mamba-retrieval` command. Each sub-command is a thin module of this package (`cli/<command>.py`): its
`register(subparsers)` adds the parser and `run(args)` calls library functions. The CLI is the one layer that may
import every other (modeling, conversion, eval, hub_cards); nothing imports it.

A command module imports at its top only what its parser needs (plain-data tables such as `sizes.NAMED_SIZES`), and
the library it runs inside `run`: `mamba-retrieval COMMAND --help` must answer at once, not after torch, mteb and
numba load (3-8 s). tests/cli/test_cli.py checks that no command's --help loads them."""

import argparse
import importlib
import sys

from mamba_retrieval.modeling.cli.arguments import CommandParser

# Sub-command -> (module of this package that defines it, one-line help). A module's `register(subparsers)` adds its
# sub-command(s) and sets `func(args)`; only the module of the command being run is imported. The help text is
# repeated here so the listing needs no import; tests/cli/test_cli.py checks it matches.
COMMANDS = {
    "init": ("init", "build a retriever Hub folder from a base model"),
    "index": ("search", "embed a folder of text files or a JSONL/BEIR corpus"),
    "search": ("search", "rank indexed documents for a query"),
    "encode": ("encode", "embed a whole corpus into Parquet shards (resumable; several devices or Ray)"),
    "train": ("train", "fine-tune a retriever (InfoNCE, temperature 0.01, BM25 hard negatives)"),
    "distil": ("distil", "distil a small retriever from all-MiniLM-L6-v2 (offline, CPU)"),
    "eval": ("eval", "evaluate a model with mteb (BEIR, MS MARCO, LongEmbed, LoCo, local BEIR folders)"),
    "bundle": ("bundle", "write an MTEB leaderboard submission (ModelMeta snippet + results folder)"),
    "card": ("card", "write a Hub folder's model card from its mteb results"),
    "convert": ("convert", "convert a research or base checkpoint into a retriever Hub folder"),
    "scan": ("scan", "score the sentences of a document against a question with an SPScanner folder"),
    "train-scanner": ("train_scanner", "fine-tune an SPScanner folder on JSONL training data"),
    "bench": ("bench", "encode speed and memory against length; training throughput"),
    "synth": ("synth", "make SPScanner training data from documents with an LLM (link-based generation)"),
    "answer": ("answer", "answer a test set's questions with an LLM from retrieved sentences; judged accuracy and F1"),
    "score-testset": (
        "score_testset",
        "score an SPScanner test set's sentences; the logits file `answer --logits` reads",
    ),
    "testset-to-json": (
        "testset_to_json",
        "convert a published SPScanner test-set or logits pickle to JSON (plain data only)",
    ),
    "ship": ("ship", "store a trained folder as the shipped model, record its scores, refresh its remote code"),
    "serve": ("serve", "serve a retriever over HTTP: an OpenAI-compatible embeddings API"),
}


def build_parser(argv=()):
    """The parser, with the full parser of the command named in argv and a one-line entry for every other."""
    parser = argparse.ArgumentParser(
        prog="mamba-retrieval", description="Mamba-based retrievers: build, convert, evaluate and serve Hub folders."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in COMMANDS:
        importlib.import_module(f"{__name__}.{COMMANDS[command][0]}").register(subparsers)
    for name, (_, help_text) in COMMANDS.items():
        if name not in subparsers.choices:  # a module may register several commands (index and search)
            subparsers.add_parser(name, help=help_text)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    args.argv = argv  # what was asked, for records of the run (sys.argv is the caller's when called from Python)
    try:
        return args.func(args) or 0
    except (FileExistsError, FileNotFoundError, ValueError) as error:  # the user's input; anything else is a bug
        print(f"mamba-retrieval {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
