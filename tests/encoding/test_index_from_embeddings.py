"""`mamba-retrieval index --from-embeddings`: a search index from the shards `encode` writes, exact or approximate."""

import json

import numpy as np
import pytest

from mamba_retrieval.modeling.cli import main
from mamba_retrieval.modeling.encoding.shards import ShardWriter
from mamba_retrieval.modeling.encoding.to_index import build_from_embeddings
from mamba_retrieval.modeling.file_hashes import model_identity
from mamba_retrieval.modeling.pretrained import DEFAULT_MODEL, PRETRAINED_DIR
from mamba_retrieval.modeling.search.documents import read_source
from mamba_retrieval.modeling.search.index import APPROXIMATE_FILE, SearchIndex
from mamba_retrieval.modeling.search.searcher import Retriever

FILES = {
    "bread.md": "Knead the dough for ten minutes, let it rise for an hour, then bake at 220 degrees.",
    "mars.txt": "Mars is the fourth planet from the Sun. Its red colour comes from iron oxide dust.",
    "venv.md": "Create a virtual environment with python -m venv .venv and activate it before pip install.",
    "tides.txt": "Tides rise and fall twice a day, pulled by the Moon.",
    "tea.md": "Steep green tea at 80 degrees for two minutes.",
}


def write_shards(folder, ids, embeddings, identity="test-model", precision="float32", shard_rows=2):
    header = {
        "model": "test-model",
        "model_identity": identity,
        "settings": {"prompt_name": "document"},
        "dimension": embeddings.shape[1],
        "precision": precision,
    }
    writer = ShardWriter(folder, header)
    for start in range(0, len(ids), shard_rows):
        writer.write(ids[start : start + shard_rows], embeddings[start : start + shard_rows])
    writer.finish()
    return folder


def clustered(rows, dimension=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(rows // 20, dimension))
    x = centres[rng.integers(0, len(centres), rows)] + 0.3 * rng.normal(size=(rows, dimension))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_an_index_from_shards_ranks_as_the_index_of_the_files(tmp_path, capsys):
    """The shipped model's document embeddings, written as shards in three parts, give the same ranking as `index`
    over the files themselves, and `search --index` takes the same --model."""
    model = str(PRETRAINED_DIR / DEFAULT_MODEL)
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in FILES.items():
        (docs / name).write_text(text)
    documents = read_source(docs).documents
    retriever = Retriever(model)
    embeddings = retriever.encode_documents([d.text for d in documents]).astype(np.float32)
    shards = write_shards(tmp_path / "emb", [d.id for d in documents], embeddings, identity=retriever.identity)

    assert main(["index", "--from-embeddings", str(shards), "--index", str(tmp_path / "from-shards")]) == 0
    assert "exact search" in capsys.readouterr().err
    assert main(["index", str(docs), "--model", model, "--index", str(tmp_path / "from-files")]) == 0
    rankings = []
    for index in ("from-shards", "from-files"):
        capsys.readouterr()
        assert main(["search", "why is the planet red", "--model", model, "--index", str(tmp_path / index)]) == 0
        rankings.append([line.split()[-1] for line in capsys.readouterr().out.splitlines()])
    assert rankings[0] == rankings[1] and len(rankings[0]) == len(FILES)
    assert SearchIndex.load(tmp_path / "from-shards").model_name == model_identity(model)


def test_an_approximate_index_records_its_recall_and_is_searched(tmp_path, capsys):
    embeddings = clustered(3000)
    ids = [f"d{row}" for row in range(len(embeddings))]
    shards = write_shards(tmp_path / "emb", ids, embeddings, shard_rows=1000)
    argv = ["index", "--from-embeddings", str(shards), "--index", str(tmp_path / "ann"), "--approximate-above", "1000"]
    assert main(argv) == 0
    assert "hnsw, recall@10" in capsys.readouterr().err
    index = SearchIndex.load(tmp_path / "ann")
    assert index.approximate is not None and index.approximate_meta["recall_at_10"] >= 0.9
    exact = SearchIndex("m", ids, [""] * len(ids), embeddings)
    found, truth = index.search(embeddings[7], 10), exact.search(embeddings[7], 10)
    assert found[0][0] == "d7" and len({i for i, _ in found} & {i for i, _ in truth}) >= 8

    ivf = build_from_embeddings(shards, tmp_path / "ivf", kind="ivf")
    assert ivf.approximate_meta["kind"] == "ivf" and ivf.approximate_meta["recall_at_10"] >= 0.9


def test_a_changed_approximate_file_is_refused(tmp_path):
    embeddings = clustered(400)
    shards = write_shards(tmp_path / "emb", [f"d{r}" for r in range(400)], embeddings, shard_rows=400)
    build_from_embeddings(shards, tmp_path / "ann", kind="hnsw")
    version = next((tmp_path / "ann").glob("v-*"))
    data = bytearray((version / APPROXIMATE_FILE).read_bytes())
    data[-1] ^= 1
    (version / APPROXIMATE_FILE).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="approximate.faiss does not match its sha256"):
        SearchIndex.load(tmp_path / "ann")


def test_what_cannot_be_indexed_is_refused_in_one_line(tmp_path, capsys):
    embeddings = clustered(40)
    ids = [f"d{r}" for r in range(40)]
    quantized = write_shards(tmp_path / "int8", ids, (embeddings * 100).astype(np.int8), precision="int8")
    floats = write_shards(tmp_path / "floats", ids, embeddings)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a document")
    cases = [
        (["index", "--from-embeddings", str(quantized), "--index", str(tmp_path / "i")], "float32 or float16"),
        (["index", "--from-embeddings", str(tmp_path / "files")], "is not a `mamba-retrieval encode` output"),
        (["index", str(tmp_path / "files"), "--from-embeddings", str(floats)], "not both"),
        (["index"], "Give SOURCE"),
    ]
    for argv, refused in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert refused in err and err.count("\n") == 1, err

    # an index of other files is not replaced by one of shards, unless --rebuild
    files_index = tmp_path / "files-index"
    assert main(["index", str(tmp_path / "files"), "--index", str(files_index)]) == 0
    capsys.readouterr()
    assert main(["index", "--from-embeddings", str(floats), "--index", str(files_index)]) == 2
    assert "pass --rebuild to replace it" in capsys.readouterr().err
    assert SearchIndex.load(files_index).ids == ["a.txt"]
    assert main(["index", "--from-embeddings", str(floats), "--index", str(files_index), "--rebuild"]) == 0
    assert len(SearchIndex.load(files_index).ids) == 40
    manifest = json.loads((floats / "manifest.json").read_text())
    assert manifest["complete"] and manifest["rows"] == 40
