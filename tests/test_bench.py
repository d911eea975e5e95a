"""The efficiency benchmark's own logic (the timings themselves are never asserted)."""

import pytest

from mamba_retrieval.eval import bench
from mamba_retrieval.modeling.cli import main


def test_prediction_uses_the_measured_growth():
    assert bench.predicted([(512, 1.0)], 2048) == pytest.approx(4.0)  # one point: linear
    assert bench.predicted([(512, 1.0), (1024, 4.0)], 2048) == pytest.approx(16.0)  # quadratic so far
    assert bench.predicted([(512, 2.0), (1024, 1.0)], 2048) == pytest.approx(2.0)  # never below linear


def test_table_gives_ratios_against_baselines_of_the_same_run():
    encode = [
        dict(model="mamba", rows=[dict(length=512, seconds=1.0, tokens_per_s=512.0, peak_rss_over_loaded_mb=10.0),
                                  dict(length=2048, skipped="predicted 999 s > --max-seconds 120")]),
        dict(model="mamba-stock", rows=[dict(length=512, seconds=4.0, tokens_per_s=128.0,
                                             peak_rss_over_loaded_mb=300.0)]),
        dict(model="bert", error="exit 1: boom"),
    ]
    table = bench.format_table(encode)
    mamba_row = next(line for line in table.splitlines() if line.startswith("mamba ") and " 512" in line)
    assert mamba_row.split()[-2:] == ["4.00", "-"]
    assert "skipped: predicted 999 s" in table and "error: exit 1: boom" in table


@pytest.mark.parametrize("arguments", [["--lengths", "0"], ["--repeats", "0"], ["--long-tokens", "-1"]])
def test_bad_options_are_clear_errors(arguments, tmp_path, capsys):
    assert main(["bench", *arguments, "--output-dir", str(tmp_path)]) == 2
    assert "must be positive" in capsys.readouterr().err
    assert not (tmp_path / "bench.json").exists()


def test_worker_measures_a_tiny_training_step(monkeypatch):
    monkeypatch.setattr(bench, "SHAPE_TRAIN", dict(hidden_size=16, num_hidden_layers=1))
    result = bench.measure_training("mamba", steps=1, batch=2, length=8)
    assert result["tokens_per_s"] > 0 and result["batch"] == 2
