"""SPScanner checkpoints (mamba_ssm Mamba-2 + binary_head, the published format at tiny sizes) -> scanner folders."""

import json

import pytest
import torch
from helpers import run_fresh_python
from source_checkpoints import SPSCANNER_CONFIG as CONFIG
from source_checkpoints import write_spscanner_checkpoint as synthetic_checkpoint

from mamba_retrieval.conversion.spscanner import (
    convert_spscanner,
    detect_spscanner,
    is_spscanner_checkpoint,
    load_spscanner_checkpoint,
    reference_from_source,
)
from mamba_retrieval.modeling.scanner.sentence_scanner import SentenceScanner, build_scanner_tokenizer

DOCUMENT = " ".join(
    f"Section {i} reports that revenue in region {i % 5} rose by {i} percent, while costs fell; "
    f"the board approved plan {i}."
    for i in range(30)
)


def test_detection_and_exact_keys(tmp_path):
    weights = synthetic_checkpoint(tmp_path / "ckpt")
    assert is_spscanner_checkpoint(CONFIG, weights)
    assert not is_spscanner_checkpoint({**CONFIG, "ssm_cfg": {}}, weights)
    assert not is_spscanner_checkpoint(CONFIG, {k: v for k, v in weights.items() if "binary_head" not in k})
    assert detect_spscanner(tmp_path / "ckpt") and not detect_spscanner(tmp_path)
    model, _, _ = load_spscanner_checkpoint(tmp_path / "ckpt")
    assert (model.config.vocab_size, model.config.n_groups, model.config.num_heads) == (50288, 1, 4)
    assert torch.equal(model.binary_head.weight, weights["binary_head.weight"])

    extra = dict(weights, **{"backbone.layers.0.mixer.extra": torch.zeros(1)})
    torch.save(extra, tmp_path / "ckpt" / "pytorch_model.bin")
    with pytest.raises(KeyError, match="Unexpected keys: \\['backbone.layers.0.mixer.extra'\\]"):
        load_spscanner_checkpoint(tmp_path / "ckpt")
    missing = {k: v for k, v in weights.items() if k != "backbone.layers.1.mixer.D"}
    torch.save(missing, tmp_path / "ckpt" / "pytorch_model.bin")
    with pytest.raises(KeyError, match="backbone.layers.1.mixer.D"):
        load_spscanner_checkpoint(tmp_path / "ckpt")
    untied = dict(weights, **{"lm_head.weight": weights["lm_head.weight"] + 1})
    torch.save(untied, tmp_path / "ckpt" / "pytorch_model.bin")
    with pytest.raises(ValueError, match="lm_head.weight differs"):
        load_spscanner_checkpoint(tmp_path / "ckpt")


def test_converted_folder_loads_offline_and_scans_like_the_reference(tmp_path):
    weights = synthetic_checkpoint(tmp_path / "ckpt")
    report = convert_spscanner(tmp_path / "ckpt", tmp_path / "out")
    assert report["parity"]["before_writing"]["relative_difference"] <= 1e-5
    assert report["parity"]["after_reload"]["same_ranking"]
    assert report["source"] == "ckpt" and set(report["source_files"]) == {"config.json", "pytorch_model.bin"}
    stored = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert stored == report
    with pytest.raises(FileExistsError):
        convert_spscanner(tmp_path / "ckpt", tmp_path / "out")

    model, _, _ = load_spscanner_checkpoint(tmp_path / "ckpt")
    reference = reference_from_source(model.config, weights)
    tokenizer = build_scanner_tokenizer()
    expected = SentenceScanner(reference, tokenizer).scan("Which region's revenue rose?", DOCUMENT, top_k=5)
    code = f"""
import json
from transformers import AutoModel
from mamba_retrieval.modeling.scanner.sentence_scanner import SentenceScanner
model = AutoModel.from_pretrained({str(tmp_path / "out")!r}, trust_remote_code=True)
result = SentenceScanner(model).scan("Which region's revenue rose?", {DOCUMENT!r}, top_k=5)
print(json.dumps([type(model).__name__, result.indices, result.all_scores]))
"""
    process = run_fresh_python(code, tmp_path)
    assert process.returncode == 0, process.stderr
    name, indices, scores = json.loads(process.stdout.strip().splitlines()[-1])
    assert name == "MambaForSentenceScoring"
    assert indices == expected.indices
    assert scores == pytest.approx(expected.all_scores, rel=1e-4, abs=1e-5)


def test_bfloat16_checkpoint_converts(tmp_path):
    synthetic_checkpoint(tmp_path / "ckpt", dtype=torch.bfloat16)
    report = convert_spscanner(tmp_path / "ckpt", tmp_path / "out")
    assert report["source_dtypes"] == ["bfloat16"] and report["dtype"] == "bfloat16"
    assert report["parity"]["before_writing"]["relative_difference"] <= 1e-5


def test_convert_command_detects_and_converts_spscanner(tmp_path, capsys):
    from mamba_retrieval.modeling.cli import main

    synthetic_checkpoint(tmp_path / "ckpt")
    assert main(["convert", str(tmp_path / "ckpt"), str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "parity after reload" in printed and "same ranking: True" in printed
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "mamba_scanner"
    assert main(["convert", str(tmp_path / "ckpt"), str(tmp_path / "other"), "--eos-token", "<EOS>"]) == 2
    assert "do not apply to an SPScanner checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
