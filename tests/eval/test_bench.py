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
        dict(
            model="mamba",
            rows=[
                dict(length=512, seconds=1.0, tokens_per_s=512.0, peak_rss_over_loaded_mb=10.0),
                dict(length=2048, skipped="predicted 999 s > --max-seconds 120"),
            ],
        ),
        dict(
            model="mamba-stock", rows=[dict(length=512, seconds=4.0, tokens_per_s=128.0, peak_rss_over_loaded_mb=300.0)]
        ),
        dict(model="bert", error="exit 1: boom"),
    ]
    table = bench.format_table(encode)
    mamba_row = next(line for line in table.splitlines() if line.startswith("mamba ") and " 512" in line)
    assert mamba_row.split()[-2:] == ["4.00", "-"]
    assert "skipped: predicted 999 s" in table and "error: exit 1: boom" in table


def test_flop_counts_follow_the_weights_of_the_models_compared():
    """2 FLOPs per weight of every projection (a token meets each once) + conv + scan, for the model we run;
    BERT-base adds 4 * length * width per layer for attention."""
    import torch
    from transformers import BertConfig, BertModel

    from mamba_retrieval.modeling.configuration_mamba_retrieval import MambaRetrievalConfig
    from mamba_retrieval.modeling.modeling_mamba_retrieval import MambaForRetrieval

    model = MambaForRetrieval(
        MambaRetrievalConfig(backbone="mamba", vocab_size=64, hidden_size=64, num_hidden_layers=2, state_size=16)
    )
    linears = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    conv = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv1d))
    scan = 2 * 9 * 128 * 16  # 2 layers x 9 FLOPs x inner 128 x state 16
    assert bench.flops_per_token("mamba", 100, hidden_size=64, num_hidden_layers=2) == 2 * (linears + conv) + scan
    bert = BertModel(BertConfig(), add_pooling_layer=False)
    bert_linears = sum(m.weight.numel() for m in bert.modules() if isinstance(m, torch.nn.Linear))
    assert bench.flops_per_token("bert", 1000) == 2 * bert_linears + 12 * 4 * 1000 * 768
    assert bench.flops_per_token("mamba2", 1000) is None
    assert "FLOP ratio BERT-base / Mamba-1 at 8192: 2.55" in bench.flop_bound_lines([8192])


@pytest.mark.parametrize(
    "arguments, refusal",
    [
        (["--lengths", "0"], "0 must be at least 1"),
        (["--repeats", "0"], "0 must be at least 1"),
        (["--long-tokens", "-1"], "-1 must be at least 0"),
    ],
)
def test_bad_options_are_clear_errors(arguments, refusal, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # refused at the argument, by argparse
        main(["bench", *arguments, "--output-dir", str(tmp_path)])
    assert exit_info.value.code == 2 and refusal in capsys.readouterr().err
    assert not (tmp_path / "bench.json").exists()


def test_worker_measures_a_tiny_training_step(monkeypatch):
    monkeypatch.setattr(bench, "SHAPE_TRAIN", dict(hidden_size=16, num_hidden_layers=1))
    result = bench.measure_training("mamba", steps=1, batch=2, length=8)
    assert result["tokens_per_s"] > 0 and result["batch"] == 2
