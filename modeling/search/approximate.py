"""Approximate nearest-neighbour search for large indexes (faiss HNSW or IVF over inner products), and how much of
the exact top-k it finds.

An exact search reads every embedding for every query (0.3 s per query at 1M x 768 float32 on 2 cores); above
`APPROXIMATE_MIN_DOCUMENTS` an index built from shards also gets a faiss graph (HNSW) or inverted lists (IVF), saved
beside the exact embeddings in the same index version, and its recall@10 against the exact search is measured when it
is built and recorded in the index table.
"""

import numpy as np

APPROXIMATE_MIN_DOCUMENTS = 100_000
KINDS = ("hnsw", "ivf")
HNSW_NEIGHBOURS, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128
IVF_PROBES = 32
RECALL_QUERIES = 200  # rows of the index used as queries to measure recall


def faiss_module():
    try:
        import faiss
    except ImportError:
        raise ValueError("An approximate index needs faiss: pip install 'mamba-retrieval[search]'.") from None
    return faiss


def build(embeddings, kind, seed=0):
    """A faiss index over the rows of `embeddings` (normalised float32) for inner-product search."""
    faiss = faiss_module()
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    rows, dimension = embeddings.shape
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    elif kind == "ivf":
        lists = max(1, min(int(4 * np.sqrt(rows)), rows // 39))  # faiss wants >= 39 training points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, lists, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(seed).choice(rows, size=min(rows, 256 * lists), replace=False)
        index.train(embeddings[np.sort(sample)])
    else:
        raise ValueError(f"Unknown approximate index {kind!r}: choose one of {', '.join(KINDS)}.")
    index.add(embeddings)
    set_search_effort(index)
    return index


def set_search_effort(index):
    """Search parameters are not all saved with the index: set them after building and after reading."""
    faiss = faiss_module()
    if isinstance(index, faiss.IndexHNSWFlat):
        index.hnsw.efSearch = HNSW_EF_SEARCH
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = min(IVF_PROBES, index.nlist)


def search(index, query_embeddings, k):
    """(scores, rows) of the `k` best rows for each query; rows of -1 (not enough neighbours found) dropped later."""
    return index.search(np.ascontiguousarray(query_embeddings, dtype=np.float32), k)


def recall_at_k(index, embeddings, k=10, queries=RECALL_QUERIES, seed=0):
    """The share of the exact top-`k` (by inner product over all rows) that `index` returns, averaged over
    `queries` rows of `embeddings` used as queries. Each query row itself is left out of both lists: a row is found
    more easily than a real query, and counting it would flatter the recall."""
    faiss = faiss_module()
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    rows = np.random.default_rng(seed).choice(len(embeddings), size=min(queries, len(embeddings)), replace=False)
    exact = faiss.IndexFlatIP(embeddings.shape[1])
    exact.add(embeddings)
    k = min(k, len(embeddings) - 1)
    if k < 1:
        return 1.0
    _, truth = exact.search(embeddings[rows], k + 1)
    _, found = search(index, embeddings[rows], k + 1)
    shares = []
    for row, t, f in zip(rows, truth, found):
        t, f = [r for r in t if r != row][:k], {r for r in f if r != row}
        shares.append(len(f.intersection(t)) / k)
    return float(np.mean(shares))


def serialize(index):
    """The index as bytes (faiss' own format: data, not code), to be written atomically and hashed."""
    return faiss_module().serialize_index(index).tobytes()


def deserialize(data):
    index = faiss_module().deserialize_index(np.frombuffer(data, dtype=np.uint8))
    set_search_effort(index)
    return index
