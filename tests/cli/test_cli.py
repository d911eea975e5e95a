"""The `mamba-retrieval` entry point: every command is listed, and only the one being run is imported."""

import argparse
import contextlib
import importlib
import io
import subprocess
import sys

import pytest

from mamba_retrieval.modeling.cli import COMMANDS, main
from mamba_retrieval.modeling.cli.arguments import CommandParser


def test_the_listing_matches_what_each_module_registers():
    for module in sorted({module for module, _ in COMMANDS.values()}):
        subparsers = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"mamba_retrieval.modeling.cli.{module}").register(subparsers)
        for action in subparsers._choices_actions:
            assert COMMANDS[action.dest] == (module, action.help), action.dest


HEAVY = (
    "torch",
    "sentence_transformers",
    "transformers",
    "mteb",
    "numba",
    "datasets",
    "bm25s",
    "openai",
    "sklearn",
    "faiss",
    "pyarrow",
    "ray",
    "fastapi",
    "uvicorn",
)


def test_every_help_and_a_mistyped_command_import_no_heavy_library():
    """`--help` of the tool and of every command (and every `ship` step) answers without torch, mteb, numba or openai:
    they took 3-8 s to load (17 s on a busy machine). One fresh process; the check runs after each command, so the
    first one that loads a heavy library is named."""
    code = f"""
import sys
from mamba_retrieval.modeling.cli import COMMANDS, main
for argv in [["--help"], ["serach", "x"]] + [[name, "--help"] for name in COMMANDS] + [["ship", "copy", "--help"]]:
    try:
        main(argv)
    except SystemExit:
        pass
    heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
    if heavy:
        sys.exit(f"{{argv}} imported {{heavy}}")
print("imported nothing heavy")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "imported nothing heavy" in result.stdout, result.stderr[-2000:]
    assert "invalid choice: 'serach'" in result.stderr
    for name in COMMANDS:
        assert name in result.stdout  # the --help listing


def registered_parsers():
    """(name, parser) of every command and every sub-step (`ship copy`), as `main` builds them."""
    subparsers = argparse.ArgumentParser().add_subparsers(parser_class=CommandParser)
    for module in sorted({module for module, _ in COMMANDS.values()}):
        importlib.import_module(f"mamba_retrieval.modeling.cli.{module}").register(subparsers)
    stack = list(subparsers.choices.items())
    while stack:
        name, parser = stack.pop()
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend((f"{name} {step}", step_parser) for step, step_parser in action.choices.items())


def cli_help(*argv):
    output = io.StringIO()
    with contextlib.redirect_stdout(output), pytest.raises(SystemExit):
        main([*argv, "--help"])
    return output.getvalue()


def test_every_command_and_option_is_explained_with_its_default():
    """Every command has a description, every argument a help text, and --help shows defaults (a test that fails
    when a new option is added without help)."""
    unexplained = []
    for name, parser in registered_parsers():
        if not parser.description:
            unexplained.append(f"{name}: no description")
        for action in parser._actions:
            if action.help is None and not isinstance(action, argparse._SubParsersAction):
                unexplained.append(f"{name}: {'/'.join(action.option_strings) or action.dest} has no help")
    assert not unexplained, "\n".join(unexplained)
    search_help = cli_help("search")
    assert "(default: 10)" in search_help and "-k TOP_K, --top-k TOP_K" in search_help


def test_help_texts_print_as_written():
    assert "50% overlap" in cli_help("scan") and "%%" not in cli_help("scan")


def test_python_dash_m_runs_the_same_command():
    """`python -m mamba_retrieval.modeling.cli` is what `torchrun -m` and `accelerate launch -m` start."""
    result = subprocess.run(
        [sys.executable, "-m", "mamba_retrieval.modeling.cli", "ship", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "refresh-code" in result.stdout, result.stderr


@pytest.mark.parametrize(
    "argv, refused",
    [
        (["convert", "src", "out", "--max-seq-length", "-5"], "-5 must be at least 1"),
        (["init", "tiny", "out", "--max-seq-length", "0"], "0 must be at least 1"),
        (["index", "src", "--max-length", "-1"], "-1 must be at least 1"),
        (["eval", "bm25", "--max-length", "-1"], "-1 must be at least 1"),
        (["search", "q", "-k", "-1"], "-1 must be at least 1"),
        (["search", "q", "-k", "0"], "0 must be at least 1"),
        (["search", "q", "-k", "two"], "'two' is not a whole number"),
        (["scan", "m", "--question", "q", "--document", "d", "--top-k", "0"], "must be a whole count >= 1"),
        (["distil", "tiny", "out", "--teacher-cache", "c", "--steps", "-1"], "-1 must be at least 0"),
        (["serve", "m", "--max-wait-ms", "-1"], "-1 must be 0 or more"),
        (["serve", "m", "--max-wait-ms", "nan"], "nan must be 0 or more"),
        (["encode", "c", "o", "--ray-gpus-per-actor", "x"], "'x' is not a number"),
    ],
)
def test_numbers_that_would_break_later_are_refused_at_the_argument(argv, refused, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2 and refused in capsys.readouterr().err
