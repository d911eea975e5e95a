"""`mamba-retrieval serve`: a light --help, one-line errors before the model loads, and a clean stop on Ctrl-C and
SIGTERM."""

import re
import signal
import socket
import subprocess
import sys

import httpx2
import pytest
from helpers import write_tiny_folder

from mamba_retrieval.modeling.cli import main
from mamba_retrieval.modeling.pretrained import DEFAULT_MODEL


def test_help_loads_no_server_or_model_library_and_says_what_0000_exposes():
    code = """
import sys
from mamba_retrieval.modeling.cli import main
try:
    main(["serve", "--help"])
except SystemExit:
    pass
heavy = ("fastapi", "uvicorn", "starlette", "torch", "sentence_transformers", "openai")
print(sorted(m for m in heavy if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.rstrip().endswith("[]"), result.stdout + result.stderr
    assert "0.0.0.0 answers anyone who can reach this machine" in " ".join(result.stdout.split())


def test_a_taken_port_and_a_missing_model_are_one_line_errors(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", DEFAULT_MODEL, "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in error and "another --port" in error
    assert main(["serve", "no-such-model-folder"]) == 2
    assert "MODEL 'no-such-model-folder' is no folder here" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, refused",
    [
        (["--port", "70000"], "70000 is no port"),
        (["--port", "-1"], "-1 must be at least 0"),
        (["--max-batch", "0"], "0 must be at least 1"),
        (["--max-inputs", "0"], "0 must be at least 1"),
    ],
)
def test_bad_numbers_are_refused_at_the_argument(argv, refused, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["serve", DEFAULT_MODEL, *argv])
    assert exit.value.code == 2 and refused in capsys.readouterr().err


def test_more_tokens_per_input_than_the_model_reads_is_refused(tmp_path, capsys):
    write_tiny_folder(tmp_path / "model", "mamba", max_seq_length=64)
    assert main(["serve", str(tmp_path / "model"), "--port", "0", "--max-tokens-per-input", "100"]) == 2
    assert "reads at most 64 tokens" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("stop, code", [(signal.SIGINT, 130), (signal.SIGTERM, -signal.SIGTERM)])
def test_ctrl_c_and_sigterm_stop_the_server_cleanly(tmp_path, stop, code):
    write_tiny_folder(tmp_path / "model", "mamba")
    process = subprocess.Popen(
        [sys.executable, "-m", "mamba_retrieval.modeling.cli", "serve", str(tmp_path / "model"), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        log = ""
        for line in process.stderr:
            log += line
            if "Application startup complete" in line:
                break
        url = re.search(r"at (http://\S+)/v1", log).group(1)
        assert httpx2.post(f"{url}/v1/embeddings", json={"model": "model", "input": "hi"}).status_code == 200
        process.send_signal(stop)
        rest = process.stderr.read()
        assert process.wait(60) == code
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Application shutdown complete" in rest and "Traceback" not in log + rest
