"""`encode` killed with SIGKILL at random moments, then rerun: the folder ends as an uninterrupted run's, nothing
embedded twice into it or lost. Real subprocesses (each loads torch): slow."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import write_tiny_folder

from mamba_retrieval.modeling.encoding.encoder import EncodeSettings, encode_corpus
from mamba_retrieval.modeling.encoding.shards import iter_shards

DOCUMENTS = 1200  # 75 shards of 16: a quiet machine writes shards fast, and a kill must still land mid-run


def rows_written(out):
    try:
        return json.loads((out / "manifest.json").read_text())["rows"]
    except (OSError, ValueError):
        return -1


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_gives_the_uninterrupted_folder(tmp_path):
    model = tmp_path / "model"
    write_tiny_folder(model, "mamba2", max_seq_length=256)
    rng = random.Random(19)
    corpus = tmp_path / "corpus.jsonl"
    rows = [{"_id": f"doc-{n}", "text": "state space " * rng.randint(0, 120)} for n in range(DOCUMENTS)]
    corpus.write_text("".join(json.dumps(row) + "\n" for row in rows))
    settings = EncodeSettings(batch_size=8, shard_size=16)
    encode_corpus(corpus, tmp_path / "whole", str(model), settings, progress=False)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "mamba_retrieval.modeling.cli", "encode", str(corpus), str(out)]
    command += ["--model", str(model), "--batch-size", "8", "--shard-size", "16"]
    kills = 0  # kills that landed before the whole corpus was in
    for _ in range(3):
        before = max(rows_written(out), 0)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 240
        while rows_written(out) <= before and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # wait until this run has added a shard, then kill it a random moment later
        time.sleep(rng.uniform(0, 0.2))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            kills += rows_written(out) < DOCUMENTS
        process.wait()
    assert kills >= 2 and 0 < rows_written(out)
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    whole, resumed = list(iter_shards(tmp_path / "whole")), list(iter_shards(out))
    assert [ids for ids, _ in resumed] == [ids for ids, _ in whole]
    for (_, expected), (_, embeddings) in zip(whole, resumed, strict=True):
        assert np.array_equal(embeddings, expected)
    assert not list(out.glob(".*.partial"))  # the killed runs' temporary files were cleared
