"""Loading never re-initialises loaded parameters; bad input gets a clear error or a defined result."""

import json
import os

import numpy as np
import pytest
import torch
from helpers import BACKBONES, embed, run_fresh_python, tiny_model
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

from mamba_retrieval.modeling.hub_folder import write_hub_folder
from mamba_retrieval.modeling.tokenizer import build_tokenizer


@pytest.mark.parametrize("backbone", BACKBONES)
def test_loading_keeps_the_ssm_parameters(backbone, tmp_path):
    model = tiny_model(backbone)
    with torch.no_grad():  # values no initialiser would produce
        for i, layer in enumerate(model.backbone.layers):
            mixer = layer.mixer
            mixer.A_log.fill_(0.123 + i)
            mixer.D.fill_(-4.5 - i)
            (mixer.dt_proj.bias if backbone == "mamba" else mixer.dt_bias).fill_(7.25 + i)
            mixer.out_proj.weight.mul_(3.0)
    write_hub_folder(model, build_tokenizer(), tmp_path / "m", max_seq_length=32)
    loaded = AutoModel.from_pretrained(tmp_path / "m", trust_remote_code=True)
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key


def test_random_init_matches_mamba_ssm_recipe():
    model = tiny_model("mamba")
    mixer = model.backbone.layers[0].mixer
    assert torch.equal(mixer.A_log, torch.log(torch.arange(1, 9).float()).expand(64, 8))
    assert torch.equal(mixer.D, torch.ones(64))
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6


def test_empty_string_embeds_the_eos_alone(tiny_folder):
    _, _, model, tokenizer = tiny_folder
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([[tokenizer.eos_token_id]])).sentence_embedding
    torch.testing.assert_close(embed(model, tokenizer, [""]), expected)


def test_model_rejects_bad_tensors(tiny_folder):
    _, _, model, _ = tiny_folder
    with pytest.raises(ValueError, match="Nothing to embed"):
        model(input_ids=torch.zeros(0, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="Nothing to embed"):
        model(input_ids=torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must lie in \[0, "):
        model(input_ids=torch.tensor([[5, model.config.vocab_size]]))
    with pytest.raises(ValueError, match="no real token"):
        model(input_ids=torch.tensor([[5, 6], [7, 8]]), attention_mask=torch.tensor([[1, 1], [0, 0]]))
    with pytest.raises(ValueError, match="shape"):
        model(input_ids=torch.tensor([5, 6]))
    with pytest.raises(ValueError, match="exactly one"):
        model()


def model_dimension(folder):
    return json.loads((folder / "config.json").read_text())["hidden_size"]


def test_sentence_transformers_bad_input(tiny_folder):
    _, folder, _, _ = tiny_folder
    st = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
    empty = st.encode_query([])
    assert isinstance(empty, np.ndarray) and empty.size == 0
    single = st.encode_query("one text")
    assert single.shape == (model_dimension(folder),)
    with pytest.raises((TypeError, ValueError)):
        st.encode_query([1, 2])


def test_tokenizer_rejects_non_strings():
    with pytest.raises((TypeError, ValueError)):
        build_tokenizer()([None, 3])


def test_missing_trust_remote_code_is_a_clear_error(tiny_folder, tmp_path):
    _, folder, _, _ = tiny_folder
    code = f"from transformers import AutoModel; AutoModel.from_pretrained(r'{folder}')"
    result = run_fresh_python(code, tmp_path)
    assert result.returncode != 0
    assert "trust_remote_code" in result.stderr


def test_a_failed_text_write_leaves_the_old_file_and_no_partial(tmp_path):
    """write_text_atomic is how a user's existing file (a card, a training record, synth's stats) is rewritten: an
    error mid-write (here a text that cannot be encoded) leaves the old file whole and no temporary beside it."""
    from mamba_retrieval.modeling.data_files import write_text_atomic

    target = tmp_path / "stats.json"
    target.write_text('{"kept": 3}\n')
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(target, '{"kept": 4, "note": "\ud800"}\n')
    assert target.read_text() == '{"kept": 3}\n' and [p.name for p in tmp_path.iterdir()] == ["stats.json"]
    write_text_atomic(target, '{"kept": 4}\n')
    assert target.read_text() == '{"kept": 4}\n'


def test_an_atomic_write_gets_the_permissions_a_plain_write_would(tmp_path):
    from mamba_retrieval.modeling.data_files import write_text_atomic

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "shared.json", "{}\n")
        (tmp_path / "plain.json").write_text("{}\n")
    finally:
        os.umask(old)
    assert (
        (tmp_path / "shared.json").stat().st_mode & 0o777 == (tmp_path / "plain.json").stat().st_mode & 0o777 == 0o644
    )
