"""A written Hub folder is self-contained and loads, offline in a fresh process, to the same model."""

import json

import torch
from helpers import PROMPTS, TEXTS, embed, run_fresh_python
from safetensors.torch import load_file

from mamba_retrieval.modeling.hub_folder import write_hub_folder

LOAD_AND_EMBED = """
import sys, torch
from transformers import AutoModel, AutoTokenizer
from sentence_transformers import SentenceTransformer
folder, out = sys.argv[1:] if len(sys.argv) > 2 else (r"{folder}", r"{out}")
texts = {texts!r}
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
with torch.no_grad():
    raw = model(**tokenizer(texts, padding=True, return_tensors="pt")).sentence_embedding
st = SentenceTransformer(folder, trust_remote_code=True, device="cpu")
torch.save({{
    "class": type(model).__module__ + "." + type(model).__name__,
    "state_dict": model.state_dict(),
    "raw": raw,
    "query": st.encode_query(texts, convert_to_tensor=True),
    "document": st.encode_document(texts, convert_to_tensor=True),
    "max_seq_length": st.max_seq_length,
}}, out)
"""


def test_folder_contents(tiny_folder):
    backbone, folder, model, _ = tiny_folder
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*")}
    for required in (
        "config.json",
        "configuration_mamba_retrieval.py",
        "modeling_mamba_retrieval.py",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "modules.json",
        "1_Pooling/config.json",
        "2_Normalize",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "README.md",
    ):
        assert required in names, required
    assert not [n for n in names if ".partial-" in n or ".old-" in n]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "mamba_retrieval" and config["backbone"] == backbone
    # auto_map names files of this folder, never another repository
    assert config["auto_map"] == {
        "AutoConfig": "configuration_mamba_retrieval.MambaRetrievalConfig",
        "AutoModel": "modeling_mamba_retrieval.MambaForRetrieval",
    }
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert not {"is_local", "local_files_only", "name_or_path"} & set(tokenizer_config)
    assert tokenizer_config["model_max_length"] == 64
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert json.loads((folder / "1_Pooling/config.json").read_text())["pooling_mode_lasttoken"] is True
    st_config = json.loads((folder / "config_sentence_transformers.json").read_text())
    assert st_config["prompts"] == PROMPTS and st_config["similarity_fn_name"] == "cosine"
    assert json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"] == 64
    saved = load_file(folder / "model.safetensors")
    assert set(saved) == set(model.state_dict())


def test_loads_offline_in_fresh_process(tiny_folder, tmp_path):
    backbone, folder, model, tokenizer = tiny_folder
    out = tmp_path / "out.pt"
    result = run_fresh_python(LOAD_AND_EMBED.format(folder=folder, out=out, texts=TEXTS), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = torch.load(out)
    assert loaded["class"].endswith("modeling_mamba_retrieval.MambaForRetrieval")
    assert loaded["class"].startswith("transformers_modules.")  # the folder's own copy of the code ran
    expected_state = model.state_dict()
    assert set(loaded["state_dict"]) == set(expected_state)
    for key, tensor in expected_state.items():
        assert torch.equal(loaded["state_dict"][key], tensor), key  # bit-equal
    assert torch.equal(loaded["raw"], embed(model, tokenizer, TEXTS))
    assert loaded["max_seq_length"] == 64
    # sentence-transformers' prompts + Pooling(lasttoken) + Normalize == the raw model on prompt + text + EOS
    for name in ("query", "document"):
        expected = embed(model, tokenizer, [PROMPTS[name] + text for text in TEXTS])
        torch.testing.assert_close(loaded[name], expected, rtol=0, atol=1e-6)


def test_query_and_document_prompts_differ(tiny_folder, tmp_path):
    _, _, model, tokenizer = tiny_folder
    query = embed(model, tokenizer, [PROMPTS["query"] + "x"])
    document = embed(model, tokenizer, [PROMPTS["document"] + "x"])
    assert not torch.allclose(query, document)


def test_existing_folder_is_not_overwritten(tiny_folder, tmp_path):
    _, _, model, tokenizer = tiny_folder
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    try:
        write_hub_folder(model, tokenizer, target, max_seq_length=64)
    except FileExistsError as error:
        assert "--force" in str(error)
    else:
        raise AssertionError("an existing folder was overwritten without force")
    assert (target / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no staging folder left behind

    write_hub_folder(model, tokenizer, target, max_seq_length=64, force=True)
    assert not (target / "notes.txt").exists() and (target / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_failed_write_leaves_nothing(tiny_folder, tmp_path):
    _, _, model, tokenizer = tiny_folder
    target = tmp_path / "out"

    class Broken:
        def __call__(self, *args, **kwargs):
            return tokenizer(*args, **kwargs)

        eos_token_id = tokenizer.eos_token_id

        def save_pretrained(self, *args, **kwargs):
            raise OSError("disk full")

    try:
        write_hub_folder(model, Broken(), target, max_seq_length=64)
    except OSError:
        pass
    else:
        raise AssertionError("expected the failure to propagate")
    assert list(tmp_path.iterdir()) == []
