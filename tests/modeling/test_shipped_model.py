"""The model that ships with the package: `mamba-retrieval-tiny`, resolved by name, loadable offline, default of
`search`, and kept in step with the modeling code it carries."""

import json
from pathlib import Path

import pytest
import torch
from helpers import REPO, run_fresh_python, write_tiny_folder
from transformers import AutoModel, AutoTokenizer

from mamba_retrieval.modeling import pretrained
from mamba_retrieval.modeling.cli import main
from mamba_retrieval.modeling.pretrained import DEFAULT_MODEL, model_path, resolve_shipped
from mamba_retrieval.modeling.shipping import write_shipped_copy

SHIPPED = Path(model_path(DEFAULT_MODEL))
REMOTE_CODE = ("configuration_mamba_retrieval.py", "modeling_mamba_retrieval.py")


def test_the_shipped_folder_is_small_and_carries_the_current_remote_code():
    size = sum(path.stat().st_size for path in SHIPPED.rglob("*") if path.is_file())
    assert size <= 30 * 1024 * 1024, f"{SHIPPED} is {size / 2**20:.1f} MiB; the repository allows 30 MiB"
    for name in REMOTE_CODE:  # a stale copy would load a model that differs from what the tests check
        assert (SHIPPED / name).read_text() == (REPO / "modeling" / name).read_text(), (
            f"{name} in {SHIPPED} differs from modeling/{name}: run `mamba-retrieval ship refresh-code` "
            "(and check the model still loads), or retrain it"
        )


def test_training_record_names_command_data_seed_and_metrics():
    record = json.loads((SHIPPED / "training.json").read_text())
    assert record["command"].startswith("mamba-retrieval distil")
    assert all("scifact" not in source and "msmarco" not in source for source in record["data"])
    assert isinstance(record["seed"], int) and record["wall_seconds"] > 0
    assert {"beir-scifact", "qmsum-longdoc", "msmarco-trecdl19-mini"} <= set(record["metrics"]["ndcg_at_10"])
    for name in record["metrics"]["result_files"]:  # the numbers are read from result files in the repository
        assert (REPO / name).is_file(), name


def test_the_shipped_card_says_how_to_load_the_shipped_copy(tmp_path):
    from mamba_retrieval.hub_cards.render import shipped_usage

    assert f"model_path({DEFAULT_MODEL!r})" in shipped_usage(SHIPPED)
    assert shipped_usage(SHIPPED) in (SHIPPED / "README.md").read_text()  # the card was rendered with it
    assert shipped_usage(tmp_path) == ""  # any other folder's card is a Hub card only


def test_names_resolve_to_the_shipped_folder_unless_a_local_folder_has_that_name(tmp_path, monkeypatch):
    assert resolve_shipped(DEFAULT_MODEL) == str(SHIPPED)
    assert resolve_shipped("some/hub-model") == "some/hub-model"
    monkeypatch.chdir(tmp_path)
    (tmp_path / DEFAULT_MODEL).mkdir()
    assert resolve_shipped(DEFAULT_MODEL) == DEFAULT_MODEL
    with pytest.raises(ValueError, match="not a model shipped"):
        model_path("mamba-retrieval-huge")


def test_a_missing_shipped_folder_says_to_reinstall(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="reinstall"):
        model_path(DEFAULT_MODEL)


def test_loads_offline_with_sentence_transformers_and_automodel_and_ranks_the_right_text(tmp_path):
    code = """
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer
from mamba_retrieval.modeling.pretrained import model_path

path = model_path()
model = SentenceTransformer(path, trust_remote_code=True)
documents = ["The heart pumps blood through the arteries and veins of the body.",
             "A violin is a string instrument played with a bow.",
             "Rain forms when water vapour condenses into droplets in clouds."]
queries = model.encode_query(["what organ pumps blood", "musical instrument with strings", "how does rain form"])
scores = model.similarity(queries, model.encode_document(documents))
assert scores.argmax(dim=1).tolist() == [0, 1, 2], scores
tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
automodel = AutoModel.from_pretrained(path, trust_remote_code=True)
batch = tokenizer([documents[0]], return_tensors="pt")
direct = automodel(**batch).sentence_embedding
assert torch.allclose(direct, model.encode([documents[0]], convert_to_tensor=True), atol=1e-5)
print("ok")
"""
    result = run_fresh_python(code, tmp_path)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_search_uses_the_shipped_model_by_default(tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "heart.md").write_text("The heart pumps blood through the arteries and veins of the body.")
    (docs / "violin.txt").write_text("A violin is a string instrument played with a bow.")
    (docs / "rain.md").write_text("Rain forms when water vapour condenses into droplets in clouds.")
    index = str(tmp_path / "index")
    assert main(["search", "which organ pumps blood?", "--source", str(docs), "--index", index, "-k", "3"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[-1] == "heart.md"


def test_eval_names_the_shipped_model_by_its_name():
    from mamba_retrieval.eval.model_specs import resolve_model

    meta = resolve_model(DEFAULT_MODEL)
    assert meta.name == f"local/{DEFAULT_MODEL}" and meta.revision.startswith("sha256-")


def test_shipped_copy_stores_float16_weights_runs_in_float32_and_takes_a_new_token_limit(tmp_path):
    from safetensors.torch import load_file

    write_tiny_folder(tmp_path / "trained", "mamba", max_seq_length=64)
    difference = write_shipped_copy(tmp_path / "trained", tmp_path / "shipped", max_seq_length=4096)
    assert difference < 1e-2  # float16 rounding of the weights, nothing else
    weights = load_file(tmp_path / "shipped" / "model.safetensors")
    assert {tensor.dtype for tensor in weights.values() if tensor.is_floating_point()} == {torch.float16}
    assert json.loads((tmp_path / "shipped" / "sentence_bert_config.json").read_text())["max_seq_length"] == 4096
    assert json.loads((tmp_path / "shipped" / "tokenizer_config.json").read_text())["model_max_length"] == 4096
    assert json.loads((tmp_path / "trained" / "sentence_bert_config.json").read_text())["max_seq_length"] == 64
    with pytest.raises(FileExistsError):
        write_shipped_copy(tmp_path / "trained", tmp_path / "shipped")


def test_a_folder_runs_the_fused_cpu_scan_without_the_package(tmp_path):
    """The remote code brings cpu_scan.py: where mamba_retrieval is not installed, numba alone gives the fused CPU
    scan, which is what the warning's hint (`pip install numba`) promises; it used to say `pip install
    mamba-retrieval`, which no public index serves. The same embedding as the package's own model."""
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(model_path(), folder)
    code = f"""
import importlib.abc, sys
class NoPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "mamba_retrieval":
            raise ImportError("mamba_retrieval is not installed here")
sys.meta_path.insert(0, NoPackage())
import torch
from transformers import AutoModel, AutoTokenizer
model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained({str(folder)!r}, trust_remote_code=True)
code = sys.modules[type(model).__module__]
assert code.fused_selective_scan is not None, "no fused scan"
assert not any(name.startswith("mamba_retrieval") for name in sys.modules)
with torch.no_grad():
    print(model(**tokenizer(["Mamba reads long text."], return_tensors="pt")).sentence_embedding[0, :4].tolist())
"""
    result = run_fresh_python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reference scan" not in result.stderr  # the slow-path warning (and its hint) did not fire
    model = AutoModel.from_pretrained(model_path(), trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(model_path(), trust_remote_code=True)
    with torch.no_grad():
        expected = model(**tokenizer(["Mamba reads long text."], return_tensors="pt")).sentence_embedding[0, :4]
    assert torch.allclose(torch.tensor(json.loads(result.stdout.strip().splitlines()[-1])), expected, atol=1e-5)
