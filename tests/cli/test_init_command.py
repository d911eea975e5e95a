"""`mamba-retrieval init`: named random sizes and transformers *-hf base folders."""

import json

import pytest
import torch
from source_checkpoints import make_transformers_lm
from transformers import AutoModel

from mamba_retrieval.modeling.cli import main
from mamba_retrieval.modeling.sizes import NAMED_SIZES
from mamba_retrieval.modeling.tokenizer import build_tokenizer


@pytest.mark.parametrize("backbone", ["mamba", "mamba2"])
@pytest.mark.parametrize("eos_token, eos_id", [("<|endoftext|>", 0), ("<EOS>", 50277)])
def test_init_from_transformers_lm(tmp_path, backbone, eos_token, eos_id):
    lm = make_transformers_lm(tmp_path / "base", backbone)
    assert (
        main(
            ["init", str(tmp_path / "base"), str(tmp_path / "out"), "--eos-token", eos_token, "--max-seq-length", "128"]
        )
        == 0
    )
    retriever = AutoModel.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    assert retriever.config.eos_token_id == eos_id
    expected = {f"backbone.{k}": v for k, v in lm.backbone.state_dict().items()}
    assert set(retriever.state_dict()) == set(expected)
    for key, tensor in expected.items():
        assert torch.equal(retriever.state_dict()[key], tensor), key
    tokenizer = build_tokenizer(eos_token)
    ids = tokenizer("a text to embed", return_tensors="pt")["input_ids"]
    assert ids[0, -1].item() == eos_id
    with torch.no_grad():
        hidden = lm.backbone(input_ids=ids).last_hidden_state[:, -1]
        embedding = retriever(input_ids=ids).sentence_embedding
    torch.testing.assert_close(embedding, torch.nn.functional.normalize(hidden, dim=-1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", ["tiny", "mamba2-tiny"])
def test_init_named_size(tmp_path, size):
    assert main(["init", size, str(tmp_path / "out"), "--query-prompt", "q: ", "--dtype", "bfloat16"]) == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["backbone"] == NAMED_SIZES[size]["backbone"] and config["dtype"] == "bfloat16"
    prompts = json.loads((tmp_path / "out" / "config_sentence_transformers.json").read_text())["prompts"]
    assert prompts == {"query": "q: ", "document": ""}


def test_init_errors(tmp_path, capsys):
    assert main(["init", "no-such-size", str(tmp_path / "a")]) == 2
    assert "neither a named size" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("mine")
    assert main(["init", "tiny", str(tmp_path / "taken")]) == 2
    refusal = capsys.readouterr().err
    assert refusal.count("\n") == 1 and "pass --force to replace it" in refusal and "force=True" not in refusal
    assert (tmp_path / "taken" / "x").read_text() == "mine"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert main(["init", str(tmp_path / "bad"), str(tmp_path / "b")]) == 2
    assert "model_type 'llama'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_killed_write_is_undone_on_the_next_run(tmp_path, capsys):
    """Killed between moving the old OUT aside and moving the new one in: OUT was missing and the user's folder
    hidden as .OUT.old-*; killed while writing: a model-sized .OUT.partial-* was left. The next run restores the
    one and removes the other, and still refuses to replace the restored folder without --force."""
    out = tmp_path / "model"
    (tmp_path / ".model.old-k1" / "model").mkdir(parents=True)
    (tmp_path / ".model.old-k1" / "model" / "mine.txt").write_text("the user's")
    (tmp_path / ".model.partial-k2").mkdir()
    (tmp_path / ".model.partial-k2" / "model.safetensors").write_bytes(b"half")
    assert main(["init", "tiny", str(out)]) == 2
    assert "restored" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "the user's"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]
    assert main(["init", "tiny", str(out), "--force"]) == 0
    assert (out / "config.json").is_file() and sorted(path.name for path in tmp_path.iterdir()) == ["model"]
