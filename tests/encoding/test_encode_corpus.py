"""`encode` (modeling/encoding/encoder.py and the CLI): a streamed corpus in, the shard folder out, with the
embeddings sentence-transformers gives for the same texts; a rerun after an interruption completes it identically;
mixing models, settings or corpora in one folder is refused."""

import gzip
import json

import numpy as np
import pytest
from helpers import write_tiny_folder
from sentence_transformers import SentenceTransformer
from sentence_transformers.util.quantization import quantize_embeddings

from mamba_retrieval.modeling.cli import main
from mamba_retrieval.modeling.data_files import document_text
from mamba_retrieval.modeling.encoding import encoder as encoder_module
from mamba_retrieval.modeling.encoding.encoder import EncodeSettings, encode_corpus
from mamba_retrieval.modeling.encoding.shards import ShardWriter, iter_shards, read_manifest

REAL_EMBED = encoder_module.embed
DOCUMENTS = [
    {"_id": f"d{number}", "title": "Title" if number % 3 == 1 else "", "text": "word " * (number * 7 % 23)}
    for number in range(21)
]  # lengths vary and are unsorted; d0 has the empty title and text


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encode") / "model"
    write_tiny_folder(folder, "mamba")
    return str(folder)


@pytest.fixture(scope="module")
def reference(model_dir):
    """What sentence-transformers gives for the corpus's texts in one encode call."""
    model = SentenceTransformer(model_dir, trust_remote_code=True, device="cpu")
    texts = [document_text(row["title"], row["text"]) for row in DOCUMENTS]
    return model.encode(texts, prompt_name="document", batch_size=4, convert_to_numpy=True)


def write_corpus(path, rows=DOCUMENTS):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_all(out):
    parts = list(iter_shards(out))
    return [i for ids, _ in parts for i in ids], np.concatenate([e for _, e in parts])


def test_encode_matches_sentence_transformers_and_streams_in_shards(tmp_path, model_dir, reference, caplog):
    settings = EncodeSettings(batch_size=4, shard_size=8)
    manifest = encode_corpus(write_corpus(tmp_path / "c.jsonl"), tmp_path / "out", model_dir, settings, progress=False)
    assert [s["rows"] for s in manifest["shards"]] == [8, 8, 5] and manifest["complete"]
    assert manifest["rows"] == 21 and manifest["empty_texts"] == 1 and manifest["dimension"] == 32
    assert manifest["settings"]["prompt"] == "passage: " and manifest["model_identity"].endswith(
        read_manifest(tmp_path / "out")["model_identity"][-23:]
    )
    ids, embeddings = read_all(tmp_path / "out")
    assert ids == [row["_id"] for row in DOCUMENTS]
    np.testing.assert_allclose(embeddings, reference, atol=1e-6, rtol=0)
    assert "1 documents have an empty text" in caplog.text


def test_parquet_gzip_and_datasets_inputs_give_the_same_folder(tmp_path, model_dir):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    settings = EncodeSettings(batch_size=4, shard_size=8)
    encode_corpus(write_corpus(tmp_path / "c.jsonl"), tmp_path / "jsonl", model_dir, settings, progress=False)
    expected = read_all(tmp_path / "jsonl")
    rows = [{"id": r["_id"], "text": r["text"], "title": r["title"]} for r in DOCUMENTS]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet", row_group_size=5)
    datasets.Dataset.from_list(rows).save_to_disk(tmp_path / "saved")
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as handle:
        handle.write((tmp_path / "c.jsonl").read_text())
    for name in ("c.parquet", "saved", "c.jsonl.gz"):
        encode_corpus(tmp_path / name, tmp_path / f"out-{name}", model_dir, settings, progress=False)
        ids, embeddings = read_all(tmp_path / f"out-{name}")
        assert ids == expected[0] and np.array_equal(embeddings, expected[1]), name


def test_a_rerun_after_an_interruption_completes_the_same_folder(tmp_path, model_dir, monkeypatch):
    corpus, settings = write_corpus(tmp_path / "c.jsonl"), EncodeSettings(batch_size=4, shard_size=4, precision="int8")
    encode_corpus(corpus, tmp_path / "whole", model_dir, settings, progress=False)
    real_write, written = ShardWriter.write, []

    def write_then_die(self, *args, **kwargs):  # the process dies after the second shard is in
        real_write(self, *args, **kwargs)
        written.append(1)
        if len(written) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(ShardWriter, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(corpus, tmp_path / "resumed", model_dir, settings, progress=False)
    monkeypatch.setattr(ShardWriter, "write", real_write)
    assert read_manifest(tmp_path / "resumed")["rows"] == 8
    with pytest.raises(ValueError, match="unfinished encode"):
        list(iter_shards(tmp_path / "resumed"))
    embedded = []
    monkeypatch.setattr(
        encoder_module, "embed", lambda e, texts, *a: embedded.extend(texts) or REAL_EMBED(e, texts, *a)
    )
    encode_corpus(corpus, tmp_path / "resumed", model_dir, settings, progress=False)
    assert len(embedded) == 21 - 8  # the two complete shards were not embedded again
    whole, resumed = read_all(tmp_path / "whole"), read_all(tmp_path / "resumed")
    assert whole[0] == resumed[0] and np.array_equal(whole[1], resumed[1]) and whole[1].dtype == np.int8
    manifest = read_manifest(tmp_path / "resumed")
    assert manifest == read_manifest(tmp_path / "whole") | {"model_identity": manifest["model_identity"]}


@pytest.mark.parametrize("precision", ["float16", "binary", "ubinary"])
def test_precisions_are_sentence_transformers_quantization(tmp_path, model_dir, reference, precision):
    settings = EncodeSettings(precision=precision, batch_size=4, shard_size=8)
    encode_corpus(write_corpus(tmp_path / "c.jsonl"), tmp_path / "out", model_dir, settings, progress=False)
    _, stored = read_all(tmp_path / "out")
    float32 = reference.astype(np.float32)
    expected = float32.astype(np.float16) if precision == "float16" else quantize_embeddings(float32, precision)
    assert stored.dtype == expected.dtype and stored.shape == expected.shape
    if precision == "float16":
        np.testing.assert_allclose(stored.astype(np.float32), expected.astype(np.float32), atol=1e-3)
    else:  # bits of values within 1e-6 of zero could flip; none of these are that close
        assert np.mean(stored == expected) > 0.99


def test_mixing_models_settings_or_corpora_is_refused(tmp_path, model_dir):
    corpus = write_corpus(tmp_path / "c.jsonl")
    settings = EncodeSettings(batch_size=4, shard_size=8)
    encode_corpus(corpus, tmp_path / "out", model_dir, settings, progress=False)
    before = {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir()}
    with pytest.raises(ValueError, match="with settings .*max_length.*one folder holds one model's embeddings"):
        encode_corpus(corpus, tmp_path / "out", model_dir, EncodeSettings(max_length=16, shard_size=8, batch_size=4))
    other_model = tmp_path / "other"
    write_tiny_folder(other_model, "mamba", seed=1)
    with pytest.raises(ValueError, match="model_identity"):
        encode_corpus(corpus, tmp_path / "out", str(other_model), settings, progress=False)
    changed = [dict(row) for row in DOCUMENTS]
    changed[3]["text"] = "another text"
    with pytest.raises(ValueError, match="shard-00000.parquet was embedded from other documents .*corpus changed"):
        encode_corpus(write_corpus(tmp_path / "changed.jsonl", changed), tmp_path / "out", model_dir, settings)
    assert {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir()} == before


def test_bad_corpora_are_one_line_errors(tmp_path, model_dir, capsys):
    duplicate = write_corpus(tmp_path / "dup.jsonl", DOCUMENTS + [{"_id": "d4", "text": "again"}])
    with pytest.raises(ValueError, match=r"dup.jsonl:22: document id 'd4' again; ids must be unique"):
        encode_corpus(duplicate, tmp_path / "out", model_dir, EncodeSettings(shard_size=8), progress=False)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="holds no documents"):
        encode_corpus(tmp_path / "empty.jsonl", tmp_path / "out2", model_dir, progress=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    argv = ["encode", str(write_corpus(tmp_path / "c.jsonl")), str(tmp_path / "mine"), "--model", model_dir]
    assert main(argv) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert main(["encode", str(tmp_path / "nowhere.jsonl"), str(tmp_path / "o"), "--model", model_dir]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mamba-retrieval encode")]
    assert errors == [
        f"mamba-retrieval encode: error: {tmp_path / 'mine'} exists and is not an encode output; give a new or "
        "empty folder for the embeddings.",
        f"mamba-retrieval encode: error: Corpus {tmp_path / 'nowhere.jsonl'} not found: give a JSONL or Parquet "
        "file, a BEIR folder or a datasets folder.",
    ]


def test_cli_writes_the_folder_and_a_rerun_changes_nothing(tmp_path, model_dir, capsys):
    argv = ["encode", str(write_corpus(tmp_path / "c.jsonl")), str(tmp_path / "out"), "--model", model_dir]
    argv += ["--shard-size", "10", "--prompt-name", "query", "--precision", "float16"]
    assert main(argv) == 0
    first = (tmp_path / "out" / "manifest.json").read_bytes()
    assert main(argv) == 0
    assert (tmp_path / "out" / "manifest.json").read_bytes() == first
    manifest = json.loads(first)
    assert manifest["settings"]["prompt"] == "query: " and manifest["precision"] == "float16"
    assert "21 embeddings (32 dimensions, float16) in 3 shards, 1 empty texts" in capsys.readouterr().err


@pytest.mark.slow
def test_devices_run_one_process_each_and_give_the_same_embeddings(tmp_path, model_dir, reference):
    """--devices cpu cpu: sentence-transformers' multi-process pool (two spawned processes, each loading torch)."""
    settings = EncodeSettings(batch_size=4, shard_size=8)
    corpus = write_corpus(tmp_path / "c.jsonl")
    manifest = encode_corpus(corpus, tmp_path / "out", model_dir, settings, devices=["cpu", "cpu"], progress=False)
    ids, embeddings = read_all(tmp_path / "out")
    assert ids == [row["_id"] for row in DOCUMENTS] and manifest["rows"] == 21
    np.testing.assert_allclose(embeddings, reference, atol=1e-6, rtol=0)
