"""A search index from the shards `mamba-retrieval encode` wrote (`mamba-retrieval index --from-embeddings`): the
corpus is embedded once, at scale, and indexed here without the model."""

import sys
from pathlib import Path

import numpy as np

from mamba_retrieval.modeling.encoding import shards
from mamba_retrieval.modeling.search import approximate as ann
from mamba_retrieval.modeling.search.index import SearchIndex, has_index, writer_lock


def build_from_embeddings(
    embeddings_dir, index_dir, kind="auto", threshold=ann.APPROXIMATE_MIN_DOCUMENTS, rebuild=False
):
    """An index of the shards `mamba-retrieval encode` wrote to `embeddings_dir` (float32 or float16), replacing the
    index at `index_dir`; with an approximate faiss index (`kind` hnsw or ivf; auto: hnsw from `threshold` rows on;
    none: exact search only), whose recall@10 against the exact search is measured and recorded. An index of another
    source at `index_dir` is replaced only with `rebuild`. Returns the index."""
    embeddings_dir = Path(embeddings_dir)
    manifest = shards.read_manifest(embeddings_dir)
    if manifest["precision"] not in ("float32", "float16"):
        raise ValueError(
            f"{embeddings_dir} holds {manifest['precision']} embeddings; an index needs float32 or float16 ones: "
            "encode with --precision float32 or float16."
        )
    ids, parts = [], []
    for shard_ids, shard_embeddings in shards.iter_shards(embeddings_dir, manifest=manifest):
        ids.extend(shard_ids)
        parts.append(shard_embeddings.astype(np.float32, copy=False))
    if not ids:
        raise ValueError(f"{embeddings_dir} holds no embeddings (an empty corpus?).")
    embeddings = np.concatenate(parts)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    embeddings /= np.where(norms > 0, norms, 1)  # cosine, whatever the encode settings
    if kind == "auto":
        kind = "hnsw" if len(ids) >= threshold else "none"
    approximate = meta = None
    if kind != "none":
        print(f"building the {kind} index of {len(ids)} embeddings ...", file=sys.stderr)
        approximate = ann.build(embeddings, kind)
        meta = {"kind": kind, "recall_at_10": round(ann.recall_at_k(approximate, embeddings), 4)}
        meta["recall_queries"] = min(ann.RECALL_QUERIES, len(ids))
    # each row's hash names the shard it came from: the table says where every embedding was read
    hashes = [shard["sha256"] for shard in manifest["shards"] for _ in range(shard["rows"])]
    index = SearchIndex(
        manifest["model_identity"], ids, hashes, embeddings, str(embeddings_dir.resolve()), approximate, meta
    )
    with writer_lock(index_dir):
        old = SearchIndex.load(index_dir) if has_index(index_dir) and not rebuild else None
        if old is not None and old.source != index.source:
            raise ValueError(
                f"The index at {index_dir} holds the documents of {old.source}, not the embeddings of "
                f"{index.source}: choose another --index, or pass --rebuild to replace it."
            )
        index.save(index_dir)
    exact = "exact search" if approximate is None else f"{kind}, recall@10 {meta['recall_at_10']:.4f} against exact"
    print(f"index of {embeddings_dir.resolve()} at {index_dir}: {len(ids)} embeddings ({exact})", file=sys.stderr)
    return index
