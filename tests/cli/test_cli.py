"""The `mamba-retrieval` entry point: every command is listed, and only the one being run is imported."""

import argparse
import importlib
import subprocess
import sys

import pytest

from mamba_retrieval.modeling.cli import COMMANDS, main


def test_the_listing_matches_what_each_module_registers():
    for module in sorted({module for module, _ in COMMANDS.values()}):
        subparsers = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"mamba_retrieval.modeling.cli.{module}").register(subparsers)
        for action in subparsers._choices_actions:
            assert COMMANDS[action.dest] == (module, action.help), action.dest


def test_help_and_a_mistyped_command_import_no_heavy_library():
    code = """
import sys
from mamba_retrieval.modeling.cli import main
for argv in (["--help"], ["serach", "x"]):
    try:
        main(argv)
    except SystemExit:
        pass
heavy = sorted(m for m in ("torch", "sentence_transformers", "transformers", "mteb", "numba") if m in sys.modules)
print("imported:", heavy)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "imported: []" in result.stdout, result.stdout + result.stderr
    assert "invalid choice: 'serach'" in result.stderr
    for name in COMMANDS:
        assert name in result.stdout  # the --help listing


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
    ],
)
def test_numbers_that_would_break_later_are_refused_at_the_argument(argv, refused, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2 and refused in capsys.readouterr().err
