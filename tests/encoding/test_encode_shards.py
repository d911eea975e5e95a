"""The embeddings folder format (modeling/encoding/shards.py): what is written reads back bit for bit, hashes are
checked, and a folder that is not an encode output, or another model's, is refused with one line."""

import json

import numpy as np
import pytest

from mamba_retrieval.modeling.encoding.shards import (
    MANIFEST,
    ShardWriter,
    iter_shards,
    read_manifest,
    shard_name,
    stored_width,
)
from mamba_retrieval.modeling.safe_paths import path_component


def header(precision="float32", dimension=12, **settings):
    return {
        "model": "m",
        "model_identity": "/x/m#sha256-0123456789abcdef",
        "settings": {"max_length": 64, "precision": precision, "prompt_name": "document", **settings},
        "dimension": dimension,
        "precision": precision,
    }


@pytest.mark.parametrize("precision", ["float32", "float16", "int8", "uint8", "binary", "ubinary"])
def test_shards_read_back_as_stored(tmp_path, precision):
    rng = np.random.default_rng(0)
    width = stored_width(12, precision)
    dtype = {"float32": np.float32, "float16": np.float16}.get(precision, np.int8 if "u" not in precision else np.uint8)
    parts = [
        (["a", "b", "c"], rng.integers(-100, 100, (3, width)).astype(dtype)),
        (["d"], rng.integers(-100, 100, (1, width)).astype(dtype)),
    ]
    writer = ShardWriter(tmp_path / "out", header(precision))
    for ids, embeddings in parts:
        writer.write(ids, embeddings)
    writer.finish()
    manifest = read_manifest(tmp_path / "out")
    assert manifest["rows"] == 4 and [s["file"] for s in manifest["shards"]] == [shard_name(0), shard_name(1)]
    assert [s["first_id"] for s in manifest["shards"]] == ["a", "d"]
    for (ids, embeddings), (read_ids, read) in zip(parts, iter_shards(tmp_path / "out"), strict=True):
        assert read_ids == ids and read.dtype == embeddings.dtype and np.array_equal(read, embeddings)


def test_unfinished_folder_and_damaged_shard_are_refused(tmp_path):
    writer = ShardWriter(tmp_path, header())
    writer.write(["a"], np.ones((1, 12), np.float32))
    with pytest.raises(ValueError, match="unfinished encode .1 rows"):
        list(iter_shards(tmp_path))
    assert len(list(iter_shards(tmp_path, require_complete=False))) == 1
    writer.finish()
    shard = tmp_path / shard_name(0)
    shard.write_bytes(shard.read_bytes()[:-1] + b"x")
    with pytest.raises(ValueError, match="does not match its sha256"):
        list(iter_shards(tmp_path))


def test_not_an_output_and_other_settings_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="is not a `mamba-retrieval encode` output .no manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="exists and is not an encode output"):
        ShardWriter(tmp_path, header())
    assert (tmp_path / "notes.txt").read_text() == "mine"
    out = tmp_path / "out"
    ShardWriter(out, header()).write(["a"], np.ones((1, 12), np.float32))
    with pytest.raises(ValueError, match="with settings .* not .*one folder holds one model's embeddings"):
        ShardWriter(out, header(max_length=32))
    with pytest.raises(ValueError, match="model_identity"):
        ShardWriter(out, {**header(), "model_identity": "other"})
    assert ShardWriter(out, header()).rows == 1  # the same header resumes


def test_hostile_manifest_cannot_name_files_outside(tmp_path):
    """A manifest is data: a shard entry naming ../elsewhere (or any other name) is refused, never opened."""
    ShardWriter(tmp_path, header()).write(["a"], np.ones((1, 12), np.float32))
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    for name in ("../secret.parquet", "/etc/passwd", "shard-00001.parquet"):
        manifest["shards"][0]["file"] = name
        (tmp_path / MANIFEST).write_text(json.dumps(manifest))
        with pytest.raises(ValueError, match="shard entry 0 of manifest.json is malformed"):
            list(iter_shards(tmp_path, require_complete=False))
    path_component(shard_name(0), "shard")  # the names the writer makes are plain file names
