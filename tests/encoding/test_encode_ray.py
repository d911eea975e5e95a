"""`encode --ray`: the Ray Data pipeline on a local 2-CPU Ray gives the embeddings of one process, and completes a
folder that a single-process run left unfinished. Starting Ray takes tens of seconds: slow."""

import json

import numpy as np
import pytest
from helpers import write_tiny_folder

from mamba_retrieval.modeling.encoding.encoder import EncodeSettings, encode_corpus
from mamba_retrieval.modeling.encoding.shards import ShardWriter, iter_shards, read_manifest

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def read_all(out):
    parts = list(iter_shards(out))
    return [i for ids, _ in parts for i in ids], np.concatenate([e for _, e in parts])


@pytest.mark.slow
def test_ray_pipeline_gives_the_single_process_embeddings(tmp_path, local_ray, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mamba_retrieval.modeling.encoding.ray_pipeline import encode_corpus_ray

    model = tmp_path / "model"
    write_tiny_folder(model, "mamba")
    rows = [{"_id": f"d{n}", "title": "T" if n % 4 else "", "text": "word " * (n * 5 % 37)} for n in range(90)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "corpus.parquet", row_group_size=20)
    settings = EncodeSettings(batch_size=4, shard_size=25)
    encode_corpus(corpus, tmp_path / "one", str(model), settings, progress=False)
    expected_ids, expected = read_all(tmp_path / "one")
    manifest = encode_corpus_ray(corpus, tmp_path / "ray", str(model), settings, actors=1)
    ids, embeddings = read_all(tmp_path / "ray")
    assert ids == expected_ids and [s["rows"] for s in manifest["shards"]] == [25, 25, 25, 15]
    assert np.abs(embeddings - expected).max() <= 1e-6
    assert manifest["settings"] == read_manifest(tmp_path / "one")["settings"]
    with pytest.raises(ValueError, match="2 actors x 1 CPUs leave less than the one CPU Ray Data needs to read"):
        encode_corpus_ray(corpus, tmp_path / "refused", str(model), settings, actors=2)
    # a single-process run stopped after two shards; Ray embeds only the rest, from the Parquet copy
    real_write, written = ShardWriter.write, []

    def write_then_die(self, *args, **kwargs):
        real_write(self, *args, **kwargs)
        written.append(1)
        if len(written) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(ShardWriter, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(corpus, tmp_path / "mixed", str(model), settings, progress=False)
    monkeypatch.setattr(ShardWriter, "write", real_write)
    manifest = encode_corpus_ray(tmp_path / "corpus.parquet", tmp_path / "mixed", str(model), settings, actors=1)
    ids, embeddings = read_all(tmp_path / "mixed")
    assert ids == expected_ids and np.abs(embeddings - expected).max() <= 1e-6 and manifest["empty_texts"] == 1
