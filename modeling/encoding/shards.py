"""The embeddings folder `mamba-retrieval encode` writes, and the one reader of it.

Layout: OUT/manifest.json and OUT/shard-00000.parquet, shard-00001.parquet, ... Each shard has two columns, `id`
(string) and `embedding` (fixed-size list of float32, float16, int8 or uint8: sentence-transformers'
`quantize_embeddings` int8/uint8, and binary/ubinary packed 8 dimensions a byte), rows in corpus order. The manifest
(format FORMAT, version FORMAT_VERSION) names the model (its identity: path and weights hash, or a Hub id), the
settings that decide the embeddings, the dimension, the stored precision, the int8/uint8 ranges, and every complete
shard: {file, rows, sha256 of the file, first id, sha256 of its ids and texts}. `complete` is true once the whole
corpus is in.

A shard becomes part of the output only when the manifest lists it: it is written to a temporary file, renamed, and
then the manifest is rewritten (both atomically), so a run killed at any moment leaves complete shards and a
manifest that lists exactly those; a rerun continues after them (encoder.py).
"""

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from mamba_retrieval.modeling.data_files import atomic_file, read_json_object, write_text_atomic
from mamba_retrieval.modeling.file_hashes import file_sha256

FORMAT = "mamba-retrieval-embeddings"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# stored precision -> numpy dtype of the `embedding` values (the pyarrow type follows from it)
PRECISIONS = {
    "float32": np.float32,
    "float16": np.float16,
    "int8": np.int8,
    "uint8": np.uint8,
    "binary": np.int8,
    "ubinary": np.uint8,
}
SHARD_NAME = re.compile(r"shard-\d{5,}\.parquet")
HEADER_KEYS = ("model", "model_identity", "settings", "dimension", "precision")
SAME_KEYS = HEADER_KEYS[1:]  # what a rerun must match; `model` is the name as given, for people to read


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ValueError("Embedding shards need pyarrow: pip install 'mamba-retrieval[encode]'.") from None
    return pyarrow, pyarrow.parquet


def shard_name(number):
    return f"shard-{number:05d}.parquet"


def stored_width(dimension, precision):
    """Values per row in the `embedding` column: the dimension, or dimension / 8 bytes for packed binary."""
    return (dimension + 7) // 8 if precision.endswith("binary") else dimension


def texts_digest(ids, texts):
    """sha256 over a shard's ids and texts: a rerun that skips the shard checks the corpus still holds them."""
    digest = hashlib.sha256()
    for doc_id, text in zip(ids, texts):
        digest.update(doc_id.encode("utf-8") + b"\0" + text.encode("utf-8") + b"\0")
    return digest.hexdigest()


def _not_an_output(out_dir, why):
    return ValueError(f"{out_dir} is not a `mamba-retrieval encode` output ({why}).")


def read_manifest(out_dir):
    """The manifest of the embeddings folder `out_dir`, checked: a folder that is not an encode output, or a manifest
    that does not hold together, is a one-line ValueError."""
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST
    if not path.is_file():
        raise _not_an_output(out_dir, f"no {MANIFEST}")
    manifest = read_json_object(path)
    if manifest.get("format") != FORMAT:
        raise _not_an_output(out_dir, f"{MANIFEST} has format {manifest.get('format')!r}, not {FORMAT!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} is format version {manifest.get('format_version')!r}; this mamba-retrieval reads version "
            f"{FORMAT_VERSION}. Re-encode, or use the version that wrote it."
        )
    missing = [key for key in (*HEADER_KEYS, "shards", "complete") if key not in manifest]
    if missing:
        raise _not_an_output(out_dir, f"{MANIFEST} lacks {', '.join(missing)}")
    if manifest["precision"] not in PRECISIONS:
        raise _not_an_output(out_dir, f"unknown precision {manifest['precision']!r}")
    if not isinstance(manifest["dimension"], int) or manifest["dimension"] < 1:
        raise _not_an_output(out_dir, f"dimension {manifest['dimension']!r} is not a positive integer")
    shards = manifest["shards"]
    if not isinstance(shards, list):
        raise _not_an_output(out_dir, "'shards' is not a list")
    for number, shard in enumerate(shards):
        ok = (
            isinstance(shard, dict)
            and shard.get("file") == shard_name(number)  # file names are data: only shard-NNNNN.parquet, in order
            and isinstance(shard.get("rows"), int)
            and shard["rows"] > 0
            and isinstance(shard.get("sha256"), str)
            and re.fullmatch(r"[0-9a-f]{64}", shard["sha256"])
            and isinstance(shard.get("first_id"), str)
        )
        if not ok:
            raise _not_an_output(out_dir, f"shard entry {number} of {MANIFEST} is malformed: {str(shard)[:120]}")
    return manifest


def read_shard(out_dir, shard, manifest):
    """(ids, embeddings) of one shard entry of `manifest`, after checking the file against the entry's hash."""
    pa, pq = _pyarrow()
    path = Path(out_dir) / shard["file"]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is listed in {MANIFEST} but missing; re-encode into a new folder.") from None
    if hashlib.sha256(data).hexdigest() != shard["sha256"]:
        raise ValueError(f"{path} does not match its sha256 in {MANIFEST} (changed or damaged); re-encode it.")
    table = pq.read_table(pa.BufferReader(data))
    dtype = np.dtype(PRECISIONS[manifest["precision"]])
    width = stored_width(manifest["dimension"], manifest["precision"])
    column = table.column("embedding").combine_chunks() if "embedding" in table.column_names else None
    if (
        column is None
        or "id" not in table.column_names
        or table.num_rows != shard["rows"]
        or not pa.types.is_fixed_size_list(column.type)
        or column.type.list_size != width
        or column.type.value_type != pa.from_numpy_dtype(dtype)
    ):
        raise ValueError(
            f"{path} does not hold {shard['rows']} rows of id + {width} {dtype} values as {MANIFEST} says."
        )
    embeddings = column.flatten().to_numpy(zero_copy_only=False).reshape(table.num_rows, width)
    return table.column("id").to_pylist(), embeddings


def iter_shards(out_dir, require_complete=True, manifest=None):
    """(ids, embeddings) for each complete shard of the embeddings folder `out_dir`, in corpus order, each checked
    against its sha256 in the manifest. Embeddings come as stored: float32, float16, int8/uint8 (quantized), or
    int8/uint8 packed bits (binary/ubinary). An unfinished folder is an error unless `require_complete` is False.
    `manifest`: one the caller read already (read_manifest), so that its shard list and the rows read agree."""
    manifest = manifest or read_manifest(out_dir)
    if require_complete and not manifest["complete"]:
        rows = sum(shard["rows"] for shard in manifest["shards"])
        raise ValueError(
            f"{out_dir} is an unfinished encode ({rows} rows in {len(manifest['shards'])} shards so far): rerun the "
            "same `mamba-retrieval encode` command to finish it."
        )
    for shard in manifest["shards"]:
        yield read_shard(out_dir, shard, manifest)


class ShardWriter:
    """Appends shards to an embeddings folder: a new one, or an unfinished or finished one written with the same
    header (model identity, settings, dimension, precision). Another header is refused: one folder, one model."""

    def __init__(self, out_dir, header):
        self.out_dir = Path(out_dir)
        missing = [key for key in HEADER_KEYS if key not in header]
        if missing:
            raise TypeError(f"ShardWriter header lacks {missing}")  # a programming error, not user input
        self.header = json.loads(json.dumps(header))  # as the manifest will hold it (lists, not tuples)
        if (self.out_dir / MANIFEST).is_file():
            self.manifest = read_manifest(self.out_dir)
            self._check_same(self.manifest)
            for stale in self.out_dir.glob(".*.partial"):  # atomic_file's temporary files of a killed run
                if stale.name.startswith((".shard-", f".{MANIFEST}.")):
                    stale.unlink(missing_ok=True)
        else:
            if self.out_dir.exists() and (not self.out_dir.is_dir() or any(self.out_dir.iterdir())):
                raise FileExistsError(
                    f"{self.out_dir} exists and is not an encode output; give a new or empty folder for the embeddings."
                )
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **self.header}
            self.manifest.update(rows=0, shards=[], complete=False)
            self._save()

    def _check_same(self, manifest):
        for key in SAME_KEYS:
            value = self.header[key]
            if manifest.get(key) != value:
                raise ValueError(
                    f"{self.out_dir} holds embeddings with {key} {json.dumps(manifest.get(key))}, not "
                    f"{json.dumps(value)}; one folder holds one model's embeddings with one set of settings: give "
                    "another output folder."
                )

    @property
    def shards(self):
        return self.manifest["shards"]

    @property
    def rows(self):
        return sum(shard["rows"] for shard in self.shards)

    def _save(self):
        self.manifest["rows"] = self.rows
        write_text_atomic(self.out_dir / MANIFEST, json.dumps(self.manifest, indent=1, ensure_ascii=False) + "\n")

    def write(self, ids, embeddings, texts_sha256=None):
        """Add one shard of `ids` and their `embeddings` (already in the stored precision)."""
        pa, pq = _pyarrow()
        dtype = np.dtype(PRECISIONS[self.header["precision"]])
        width = stored_width(self.header["dimension"], self.header["precision"])
        embeddings = np.ascontiguousarray(embeddings)
        if embeddings.dtype != dtype or embeddings.shape != (len(ids), width) or not ids:
            raise ValueError(
                f"a shard takes ({len(ids)}, {width}) {dtype} values, got {embeddings.shape} {embeddings.dtype}"
            )
        column = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), width)
        table = pa.table({"id": pa.array(ids, pa.string()), "embedding": column})
        name = shard_name(len(self.shards))
        with atomic_file(self.out_dir / name, "wb") as handle:
            pq.write_table(table, handle)
        entry = {"file": name, "rows": len(ids), "sha256": file_sha256(self.out_dir / name), "first_id": ids[0]}
        if texts_sha256 is not None:
            entry["texts_sha256"] = texts_sha256
        self.shards.append(entry)
        self.manifest["complete"] = False
        self._save()

    @property
    def quantization_ranges(self):
        """The int8/uint8 ranges (2 x dimension: minima, maxima) every shard is quantized with, or None."""
        ranges = self.manifest.get("quantization_ranges")
        return None if ranges is None else np.asarray(ranges, dtype=np.float32)

    def set_quantization_ranges(self, ranges):
        """Record the int8/uint8 ranges before the first shard: a rerun quantizes the rest with the same ones."""
        self.manifest["quantization_ranges"] = np.asarray(ranges, dtype=np.float32).tolist()
        self._save()

    def finish(self, **summary):
        """Mark the folder complete (the whole corpus is in), recording `summary` (counts) in the manifest."""
        self.manifest.update(summary, complete=True)
        self._save()
