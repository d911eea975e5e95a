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


TINY = dict(hidden_size=16, num_hidden_layers=1)


def test_table_keys_rows_by_length_and_batch():
    row = dict(seconds=1.0, peak_rss_over_loaded_mb=1.0)
    encode = [
        dict(
            model="mamba",
            rows=[dict(row, length=64, batch=1, tokens_per_s=64.0), dict(row, length=64, batch=4, tokens_per_s=512.0)],
        ),
        dict(
            model="mamba-stock",
            rows=[dict(row, length=64, batch=1, tokens_per_s=32.0), dict(row, length=64, batch=4, tokens_per_s=64.0)],
        ),
    ]
    lines = bench.format_table(encode).splitlines()
    ours = [line.split() for line in lines if line.startswith("mamba ")]
    assert [(fields[2], fields[-2]) for fields in ours] == [("1", "2.00"), ("4", "8.00")]


def test_encode_rows_per_batch_size_with_busy_processes(monkeypatch):
    monkeypatch.setattr(bench, "SHAPE_130M", TINY)
    started = []
    real_enter = bench.busy_processes.__enter__

    def enter(self):
        real_enter(self)
        started.append([process.pid for process in self.processes])
        assert all(_alive(pid) for pid in started[-1])
        return self

    monkeypatch.setattr(bench.busy_processes, "__enter__", enter)
    result = bench.measure_encode(
        "mamba", [8, 16], repeats=1, max_seconds=60, stream_chunk_size=None, batch_sizes=[1, 3], busy=2
    )
    assert [(row["length"], row["batch"]) for row in result["rows"]] == [(8, 1), (16, 1), (8, 3), (16, 3)]
    assert all(row["tokens_per_s"] > 0 and row["peak_rss_over_loaded_mb"] >= 0 for row in result["rows"])
    assert result["device"] == "cpu" and "peak_gpu_mb" not in result["rows"][0]
    assert len(started) == 4 and all(len(pids) == 2 for pids in started)
    assert not any(_alive(pid) for pids in started for pid in pids)


def _alive(pid):
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_busy_processes_end_on_an_error_and_when_their_parent_is_killed(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    with pytest.raises(KeyboardInterrupt):
        with bench.busy_processes(2) as busy:
            pids = [process.pid for process in busy.processes]
            assert all(_alive(pid) for pid in pids)
            raise KeyboardInterrupt  # Ctrl-C during a timed run
    assert not any(_alive(pid) for pid in pids)

    # the bench's child killed outright (no finally runs): its busy loops notice and end
    code = (
        "import sys, time\nfrom mamba_retrieval.eval.bench import busy_processes\n"
        "busy = busy_processes(2).__enter__()\nprint(*[p.pid for p in busy.processes], flush=True)\ntime.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pids = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)


def test_first_call_row_splits_its_memory(monkeypatch):
    monkeypatch.setattr(bench, "SHAPE_130M", TINY)
    result = bench.measure_first_call(tokens=40, stream_chunk_size=16)
    assert result["tokens"] == 40 and result["stream_chunk_size"] == 16 and result["seconds"] > 0
    assert result["peak_rss_over_loaded_mb"] >= 0 and {"peak_anon_over_loaded_mb", "peak_file_over_loaded_mb"} <= set(
        result
    )
    assert "first call in a fresh process, 40 tokens" in bench.first_call_line(result)


def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["bench", "--device", "cuda", "--output-dir", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "sees no GPU" in error and "--device cpu" in error
    assert not (tmp_path / "out").exists()


def test_machine_record_names_the_device_and_versions():
    import torch

    machine = bench.machine_description("cpu")
    assert (
        machine["device"] == "cpu"
        and machine["device_name"] == machine["cpu"]
        and machine["torch"] == torch.__version__
    )
    assert "cuda" in machine and "cudnn" in machine
