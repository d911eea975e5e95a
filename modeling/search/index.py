"""A saved embedding index over a folder of text files or a JSONL/BEIR corpus, updated incrementally.

Each document is embedded whole, in one pass (long files are where a Mamba encoder is cheap).

One index is one unit, swapped in whole: the index folder holds version folders (`v-*/index.json`, the model and
one entry per document with its content hash; `v-*/embeddings.npy`) and `CURRENT`, the name of the version in use.
A save writes a new version completely, then replaces `CURRENT` in one atomic rename, then removes older versions,
so a reader sees the old index or the new one, never a mix, whenever a writer is killed. Writers take a lock on
`.lock`, so two `index` runs on one index take turns instead of losing an update. A version's table and embeddings
carry a checksum of both: a damaged or mismatched file (NaN, a cut or extended file, swapped ids, another
dimension, broken JSON) is refused with the file's name and `--rebuild`, never searched. An index built from
`mamba-retrieval encode` shards may also hold an approximate faiss index (`approximate.faiss`, see approximate.py),
bound to the table by its size and sha256.
"""

import contextlib
import hashlib
import json
import re
import shutil
import uuid
from pathlib import Path

import numpy as np

from mamba_retrieval.modeling.data_files import atomic_file
from mamba_retrieval.modeling.safe_paths import path_component
from mamba_retrieval.modeling.search import approximate as ann

INDEX_FILE, EMBEDDINGS_FILE, CURRENT_FILE, LOCK_FILE = "index.json", "embeddings.npy", "CURRENT", ".lock"
APPROXIMATE_FILE = "approximate.faiss"
FAISS_MIN_DOCUMENTS = 50_000  # below this an exact numpy search is as fast as faiss
FORMAT_VERSION = 2  # 1: index.json + embeddings.npy in the index folder itself (still read; the next save converts)
REBUILD = "rebuild it with `mamba-retrieval index SOURCE --rebuild`"


def checksum(model_name, ids, hashes, embeddings):
    """What binds a version's table to its embeddings: any changed, swapped, cut or added row changes it."""
    digest = hashlib.sha256(model_name.encode())
    for doc_id, doc_hash in zip(ids, hashes):
        digest.update(f"{doc_id}\0{doc_hash}\n".encode())
    digest.update(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes())
    return digest.hexdigest()


class SearchIndex:
    def __init__(self, model_name, ids, hashes, embeddings, source=None, approximate=None, approximate_meta=None):
        self.model_name, self.ids, self.hashes, self.embeddings = model_name, ids, hashes, embeddings
        self.source = source  # the resolved path of what was indexed (None: an index from before it was recorded)
        # a faiss index over the same rows, searched instead of the exact embeddings; its kind and measured recall
        self.approximate, self.approximate_meta = approximate, approximate_meta

    @classmethod
    def load(cls, folder):
        folder = Path(folder)
        for _ in range(3):  # a writer may remove the version just read from CURRENT: read CURRENT again
            version = _current_version(folder)
            try:
                return cls._load_version(folder, version)
            except FileNotFoundError:
                if version == folder or _current_version(folder) == version:
                    raise
        return cls._load_version(folder, _current_version(folder))

    @classmethod
    def _load_version(cls, folder, version):
        table_file, embeddings_file = version / INDEX_FILE, version / EMBEDDINGS_FILE
        if not table_file.is_file():
            raise FileNotFoundError(
                f"No index at {folder}: build one first with `mamba-retrieval index SOURCE "
                f"--index {folder}` (or pass --source to search)."
            )

        def damaged(path, problem):
            return ValueError(f"The index at {folder} is damaged: {path} {problem}; {REBUILD}.")

        try:
            meta = json.loads(table_file.read_text(encoding="utf-8"))
            documents = meta["documents"]
            ids, hashes = [str(d["id"]) for d in documents], [str(d["sha256"]) for d in documents]
            model_name = str(meta["model"])
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise damaged(table_file, f"is not an index table ({type(error).__name__}: {error})") from None
        try:
            embeddings = np.load(embeddings_file, allow_pickle=False)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, EOFError) as error:
            raise damaged(embeddings_file, f"is not a saved array ({error})") from None
        if embeddings.ndim != 2 or len(embeddings) != len(ids) or embeddings.dtype != np.float32:
            raise damaged(embeddings_file, f"holds {embeddings.shape} {embeddings.dtype} for {len(ids)} documents")
        if not np.isfinite(embeddings).all():
            raise damaged(embeddings_file, "holds NaN or infinite values")
        if len(set(ids)) != len(ids):
            raise damaged(table_file, "names a document twice")
        if meta.get("format_version", 1) >= 2:
            if meta.get("dimension") != embeddings.shape[1]:
                raise damaged(
                    embeddings_file, f"has dimension {embeddings.shape[1]}, the table {meta.get('dimension')}"
                )
            if meta.get("embeddings_bytes") != embeddings_file.stat().st_size:
                raise damaged(
                    embeddings_file,
                    f"has {embeddings_file.stat().st_size} bytes, the table says {meta.get('embeddings_bytes')}",
                )
            if meta.get("checksum") != checksum(model_name, ids, hashes, embeddings):
                raise damaged(version, "has a table and embeddings that do not belong together (checksum)")
        approximate, approximate_meta = None, meta.get("approximate")
        if approximate_meta is not None:
            path = version / APPROXIMATE_FILE
            if not path.is_file() and version.is_dir():  # (a version removed by a writer: load() reads CURRENT again)
                raise damaged(path, "is missing")
            data = path.read_bytes()
            if (
                not isinstance(approximate_meta, dict)
                or approximate_meta.get("sha256") != hashlib.sha256(data).hexdigest()
            ):
                raise damaged(path, "does not match its sha256 in the table")
            approximate = ann.deserialize(data)
            if approximate.ntotal != len(ids) or approximate.d != embeddings.shape[1]:
                raise damaged(path, f"holds {approximate.ntotal} rows of {approximate.d} for {len(ids)} documents")
        return cls(model_name, ids, hashes, embeddings, meta.get("source"), approximate, approximate_meta)

    def save(self, folder):
        """Write a new version and make it current in one rename; older versions are removed afterwards. A folder
        that holds anything but an index is refused: the clean-up below would delete a user's v-* folders."""
        folder = Path(folder)
        refuse_foreign_folder(folder)
        folder.mkdir(parents=True, exist_ok=True)
        embeddings = np.ascontiguousarray(self.embeddings, dtype=np.float32)
        meta = {
            "format_version": FORMAT_VERSION,
            "model": self.model_name,
            "source": self.source,
            "rows": len(self.ids),
            "dimension": int(embeddings.shape[1]),
            "checksum": checksum(self.model_name, self.ids, self.hashes, embeddings),
            "documents": [{"id": i, "sha256": h} for i, h in zip(self.ids, self.hashes)],
        }
        version = folder / f"v-{uuid.uuid4().hex[:12]}"
        version.mkdir()
        try:
            with atomic_file(version / EMBEDDINGS_FILE, "wb") as f:
                np.save(f, embeddings, allow_pickle=False)
            meta["embeddings_bytes"] = (version / EMBEDDINGS_FILE).stat().st_size  # a cut or extended file differs
            if self.approximate is not None:
                data = ann.serialize(self.approximate)
                with atomic_file(version / APPROXIMATE_FILE, "wb") as f:
                    f.write(data)
                meta["approximate"] = {**(self.approximate_meta or {}), "sha256": hashlib.sha256(data).hexdigest()}
            with atomic_file(version / INDEX_FILE, "wb") as f:
                f.write(json.dumps(meta, indent=1).encode())
            with atomic_file(folder / CURRENT_FILE, "wb") as f:  # the one switch
                f.write(version.name.encode())
        except BaseException:
            shutil.rmtree(version, ignore_errors=True)
            raise
        for old in folder.glob("v-*"):  # versions no reader is sent to any more, and what killed writers left
            if old.name != version.name:
                shutil.rmtree(old, ignore_errors=True)
        for stale in folder.glob(f".{CURRENT_FILE}.*.partial"):  # a pointer a killed writer did not finish
            stale.unlink(missing_ok=True)
        for legacy in (INDEX_FILE, EMBEDDINGS_FILE):  # format 1 kept them in the folder itself
            with contextlib.suppress(FileNotFoundError):
                (folder / legacy).unlink()

    def search(self, query_embedding, k):
        k = min(k, len(self.ids))
        if self.approximate is not None:
            scores, rows = ann.search(self.approximate, query_embedding[None], k)
            return [(self.ids[r], float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]
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


def refuse_foreign_folder(folder):
    """Refuse (FileExistsError) a folder that holds anything but an index: saving one there would delete its v-*."""
    if Path(folder).is_dir() and not has_index(folder):
        foreign = sorted(p.name for p in Path(folder).iterdir() if not _index_artifact(p.name))
        if foreign:
            raise FileExistsError(
                f"{folder} is not a search index and holds other files ({', '.join(foreign[:3])}); give a new or "
                "empty folder as --index."
            )


def _index_artifact(name):
    """What an index folder holds, or a killed writer left in it."""
    return (
        name == LOCK_FILE
        or re.fullmatch(r"v-[0-9a-f]{12}", name) is not None
        or re.fullmatch(rf"\.{CURRENT_FILE}\..*\.partial", name) is not None
    )


def _current_version(folder):
    """The version folder CURRENT names; the index folder itself for an index of format 1 (or no index)."""
    pointer = folder / CURRENT_FILE
    if not pointer.is_file():
        return folder
    name = pointer.read_text(encoding="utf-8").strip()
    try:
        if not name.startswith("v-"):
            raise ValueError
        return folder / path_component(name, "version")
    except ValueError:
        raise ValueError(f"The index at {folder} is damaged: {pointer} names {name!r}; {REBUILD}.") from None


@contextlib.contextmanager
def writer_lock(folder):
    """One writer at a time per index (fcntl: POSIX systems; elsewhere writers are not serialised)."""
    folder = Path(folder)
    refuse_foreign_folder(folder)  # before the lock file is put into it
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(folder / LOCK_FILE, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def has_index(folder):
    return (Path(folder) / CURRENT_FILE).is_file() or (Path(folder) / INDEX_FILE).is_file()


def update_index(index_dir, documents, model_name, encode_documents, rebuild=False, names_model=None, source=None):
    """Embed only new or changed documents, drop removed ones, save; returns (index, counts).

    encode_documents(list of texts) -> (n, dim) float32 array of normalised embeddings. `names_model(stored)` tells
    whether an index's stored model name is this model (default: equal to `model_name`); the index is saved under
    `model_name`. `source` (what the documents come from) is recorded; an index of another source is not updated
    from this one (that replaced a whole index with another folder's files), unless `rebuild`.
    """
    index_dir = Path(index_dir)
    new_folder = not index_dir.exists()
    try:
        with writer_lock(index_dir):  # read, embed and save as one step: a concurrent run waits, then updates this
            return _update_locked(index_dir, documents, model_name, encode_documents, rebuild, names_model, source)
    except BaseException:
        if new_folder and not has_index(index_dir):  # a first update that failed leaves no empty index folder
            shutil.rmtree(index_dir, ignore_errors=True)
        raise


def _update_locked(index_dir, documents, model_name, encode_documents, rebuild, names_model, source):
    old = SearchIndex.load(index_dir) if has_index(index_dir) and not rebuild else None
    if old is not None and old.source and source and old.source != source:
        raise ValueError(
            f"The index at {index_dir} holds the documents of {old.source}, not of {source}: leave out --index "
            "(each source has its own), or pass --rebuild to replace it."
        )
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
    index = SearchIndex(model_name, [d.id for d in documents], [d.sha256 for d in documents], embeddings, source)
    index.save(index_dir)
    removed = len(set(old.ids) - {d.id for d in documents}) if old else 0
    return index, {"embedded": len(todo), "unchanged": len(documents) - len(todo), "removed": removed}
