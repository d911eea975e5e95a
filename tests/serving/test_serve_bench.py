"""The serve benchmark script runs end to end at a small size (two real servers, 16 clients): nothing lost, every bad
request answered with a 4xx in OpenAI's shape. Its speed figures are not checked here (timed tests are not)."""

import json

import pytest

from mamba_retrieval.eval import serve_bench


@pytest.mark.slow
def test_the_benchmark_runs_and_loses_nothing(tmp_path):
    output = tmp_path / "bench.json"
    assert serve_bench.main(["--requests", "48", "--repeats", "1", "--output", str(output)]) == 0
    record = json.loads(output.read_text())
    assert record["lost_or_wrong"] == 0 and record["bad_requests"]["all_4xx_openai_shape"]
    assert [run["answered"] for mode in ("batched", "unbatched") for run in record["runs"][mode]] == [48, 48]
    assert record["runs"]["unbatched"][0]["mean_batch"] == 1.0
