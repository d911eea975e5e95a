"""The `mamba-retrieval` command: one sub-command per module, each registering its own parser."""

import argparse
import importlib
import sys

# Sub-command -> (module that defines it, one-line help). A module's `register(subparsers)` adds its sub-command(s)
# and sets `func(args)`; only the module of the command being run is imported, because the modules pull in
# sentence-transformers, mteb and numba (seconds), which `mamba-retrieval --help` or a typo should not wait for.
# The help text is repeated here so the listing needs no import; tests/test_cli.py checks it matches the module's.
COMMANDS = {
    "init": ("mamba_retrieval.modeling.init_command", "build a retriever Hub folder from a base model"),
    "index": ("mamba_retrieval.modeling.search_command", "embed a folder of text files or a JSONL/BEIR corpus"),
    "search": ("mamba_retrieval.modeling.search_command", "rank indexed documents for a query"),
    "train": ("mamba_retrieval.modeling.train_command",
              "fine-tune a retriever (InfoNCE, temperature 0.01, BM25 hard negatives)"),
    "distil": ("mamba_retrieval.modeling.distil_command",
               "distil a small retriever from all-MiniLM-L6-v2 (offline, CPU)"),
    "eval": ("mamba_retrieval.eval.eval_command",
             "evaluate a model with mteb (BEIR, MS MARCO, LongEmbed, LoCo, local BEIR folders)"),
    "bundle": ("mamba_retrieval.eval.leaderboard_bundle",
               "write an MTEB leaderboard submission (ModelMeta snippet + results folder)"),
    "card": ("mamba_retrieval.hub_cards.card_command", "write a Hub folder's model card from its mteb results"),
    "convert": ("mamba_retrieval.conversion.convert_command",
                "convert a research or base checkpoint into a retriever Hub folder"),
    "scan": ("mamba_retrieval.modeling.scan_command",
             "score the sentences of a document against a question with an SPScanner folder"),
    "train-scanner": ("mamba_retrieval.modeling.scanner_training",
                      "fine-tune an SPScanner folder on JSONL training data"),
    "bench": ("mamba_retrieval.eval.bench", "encode speed and memory against length; training throughput"),
    "synth": ("mamba_retrieval.modeling.synth_command",
              "make SPScanner training data from documents with an LLM (link-based generation)"),
    "answer": ("mamba_retrieval.eval.answer_judge",
               "answer a test set's questions with an LLM from retrieved sentences; judged accuracy and F1"),
}


def build_parser(argv=()):
    """The parser, with the full parser of the command named in argv and a one-line entry for every other."""
    parser = argparse.ArgumentParser(prog="mamba-retrieval", description="Mamba-based retrievers: build, convert, "
                                     "evaluate and serve Hub folders.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in COMMANDS:
        importlib.import_module(COMMANDS[command][0]).register(subparsers)
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
    except (FileExistsError, FileNotFoundError, ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"mamba-retrieval {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
