"""A saved embedding index over a folder of text files or a JSONL/BEIR corpus, updated incrementally.

Each document is embedded whole, in one pass (long files are where a Mamba encoder is cheap). The index folder holds
`index.json` (the model it was built with, one entry per document with a content hash) and `embeddings.npy`; both
are written to temporary files and swapped in only when complete, so a failed or interrupted run never damages an
existing index.
"""

import json
import os
import tempfile
from pathlib import Path

import numpy as np

INDEX_FILE, EMBEDDINGS_FILE = "index.json", "embeddings.npy"
FAISS_MIN_DOCUMENTS = 50_000  # below this an exact numpy search is as fast as faiss
FORMAT_VERSION = 1


class SearchIndex:
    def __init__(self, model_name, ids, hashes, embeddings):
        self.model_name, self.ids, self.hashes, self.embeddings = model_name, ids, hashes, embeddings

    @classmethod
    def load(cls, folder):
        folder = Path(folder)
        if not (folder / INDEX_FILE).is_file():
            raise FileNotFoundError(
                f"No index at {folder}: build one first with `mamba-retrieval index SOURCE "
                f"--index {folder}` (or pass --source to search)."
            )
        meta = json.loads((folder / INDEX_FILE).read_text())
        embeddings = np.load(folder / EMBEDDINGS_FILE)
        if len(meta["documents"]) != len(embeddings):
            raise ValueError(
                f"The index at {folder} is inconsistent ({len(meta['documents'])} documents, "
                f"{len(embeddings)} embeddings); rebuild it with --rebuild."
            )
        ids = [d["id"] for d in meta["documents"]]
        return cls(meta["model"], ids, [d["sha256"] for d in meta["documents"]], embeddings)

    def save(self, folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "model": self.model_name,
            "documents": [{"id": i, "sha256": h} for i, h in zip(self.ids, self.hashes)],
        }
        # embeddings first, metadata last: a reader never sees new metadata beside old embeddings
        _atomic_write(folder / EMBEDDINGS_FILE, lambda f: np.save(f, self.embeddings))
        _atomic_write(folder / INDEX_FILE, lambda f: f.write(json.dumps(meta, indent=1).encode()))

    def search(self, query_embedding, k):
        k = min(k, len(self.ids))
        if len(self.ids) >= FAISS_MIN_DOCUMENTS and _faiss() is not None:
            return self._search_faiss(query_embedding, k)
        scores = self.embeddings @ query_embedding
        top = np.argsort(-scores, kind="stable")[:k]
        return [(self.ids[i], float(scores[i])) for i in top]

    def _search_faiss(self, query_embedding, k):
        faiss = _faiss()
        index = faiss.IndexFlatIP(self.embeddings.shape[1])  # exact inner-product search, BLAS-batched
        index.add(np.ascontiguousarray(self.embeddings, dtype=np.float32))
        scores, rows = index.search(np.ascontiguousarray(query_embedding[None], dtype=np.float32), k)
        return [(self.ids[r], float(s)) for r, s in zip(rows[0], scores[0])]


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _atomic_write(path, write):
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def update_index(index_dir, documents, model_name, encode_documents, rebuild=False, names_model=None):
    """Embed only new or changed documents, drop removed ones, save; returns (index, counts).

    encode_documents(list of texts) -> (n, dim) float32 array of normalised embeddings. `names_model(stored)` tells
    whether an index's stored model name is this model (default: equal to `model_name`); the index is saved under
    `model_name`.
    """
    index_dir = Path(index_dir)
    old = SearchIndex.load(index_dir) if (index_dir / INDEX_FILE).is_file() and not rebuild else None
    if old is not None and not (names_model or model_name.__eq__)(old.model_name):
        raise ValueError(
            f"The index at {index_dir} was built with model {old.model_name!r}, not {model_name!r}. "
            "Re-embed everything with `mamba-retrieval index SOURCE --rebuild`, or use another --index."
        )
    known = {(i, h): row for row, (i, h) in enumerate(zip(old.ids, old.hashes))} if old else {}
    todo = [d for d in documents if (d.id, d.sha256) not in known]
    new_rows = iter(encode_documents([d.text for d in todo])) if todo else iter(())
    rows = []
    for document in documents:
        key = (document.id, document.sha256)
        rows.append(old.embeddings[known[key]] if key in known else next(new_rows))
    embeddings = np.stack(rows).astype(np.float32)
    index = SearchIndex(model_name, [d.id for d in documents], [d.sha256 for d in documents], embeddings)
    index.save(index_dir)
    removed = len(set(old.ids) - {d.id for d in documents}) if old else 0
    return index, {"embedded": len(todo), "unchanged": len(documents) - len(todo), "removed": removed}
