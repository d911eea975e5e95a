"""A saved embedding index over a folder of text files or a JSONL/BEIR corpus, updated incrementally.

Each document is embedded whole, in one pass (long files are where a Mamba encoder is cheap). The index folder holds
`index.json` (the model it was built with, one entry per document with a content hash) and `embeddings.npy`; both
are written to temporary files and swapped in only when complete, so a failed or interrupted run never damages an
existing index.
"""

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text"}
INDEX_FILE, EMBEDDINGS_FILE = "index.json", "embeddings.npy"
FAISS_MIN_DOCUMENTS = 50_000  # below this an exact numpy search is as fast as faiss
FORMAT_VERSION = 1


@dataclass
class Document:
    id: str  # a file's path relative to the source folder, or a corpus _id
    text: str

    @property
    def sha256(self):
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass
class SourceReport:
    documents: list
    skipped: list  # (path, reason)


def read_source(source):
    """Documents of `source`: a folder of text/Markdown files (recursively), a JSONL corpus, or a BEIR folder."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist.")
    if source.is_file():
        return SourceReport(read_jsonl_corpus(source), [])
    if (source / "corpus.jsonl").is_file():
        return SourceReport(read_jsonl_corpus(source / "corpus.jsonl"), [])
    return read_text_folder(source)


def read_jsonl_corpus(path):
    """BEIR-style JSONL: one object per line with `_id` (or `id`), `text` and an optional `title`."""
    documents = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                doc_id = str(row["_id"] if "_id" in row else row["id"])
                text = row["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(f"{path}:{number}: expected a JSON object with '_id' (or 'id') and 'text' "
                                 f"({type(error).__name__}: {error}).") from error
            title = row.get("title") or ""
            documents.append(Document(doc_id, f"{title} {text}".strip() if title else text))
    if not documents:
        raise ValueError(f"{path} holds no documents.")
    return documents


def read_text_folder(folder):
    documents, skipped = [], []
    ignored = git_ignored(folder)
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue  # hidden files and folders (.git, an index kept inside the folder) are not documents
        if path.suffix.lower() not in TEXT_SUFFIXES or ignored(relative.as_posix()):
            continue  # what git ignores (build outputs and the like) is not the folder's text either
        try:
            data = path.read_bytes()
        except OSError as error:
            skipped.append((str(relative), f"unreadable: {error.strerror or error}"))
            continue
        if b"\0" in data:
            skipped.append((str(relative), "binary content"))
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            skipped.append((str(relative), "not UTF-8 text"))
            continue
        documents.append(Document(relative.as_posix(), text))
    if not documents:
        detail = f" ({len(skipped)} skipped: {skipped[0][0]}: {skipped[0][1]}, ...)" if skipped else ""
        raise ValueError(f"No text files ({', '.join(sorted(TEXT_SUFFIXES))}) in {folder}{detail}.")
    return SourceReport(documents, skipped)


def git_ignored(folder):
    """What git ignores under `folder`, as a predicate on posix paths relative to it, when `folder` is in a git work
    tree and git is installed (otherwise nothing is ignored). A folder that is itself ignored is indexed whole: the
    user pointed at it."""
    try:
        result = subprocess.run(["git", "-C", str(folder), "ls-files", "-z", "--others", "--ignored",
                                 "--exclude-standard", "--directory", "."], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return lambda path: False
    entries = {os.fsdecode(entry) for entry in result.stdout.split(b"\0") if entry}
    if result.returncode != 0 or "./" in entries:  # not a work tree (or git refused), or the folder itself ignored
        return lambda path: False
    folders = tuple(entry for entry in entries if entry.endswith("/"))  # --directory: a wholly ignored folder
    return lambda path: path in entries or path.startswith(folders)


class SearchIndex:
    def __init__(self, model_name, ids, hashes, embeddings):
        self.model_name, self.ids, self.hashes, self.embeddings = model_name, ids, hashes, embeddings

    @classmethod
    def load(cls, folder):
        folder = Path(folder)
        if not (folder / INDEX_FILE).is_file():
            raise FileNotFoundError(f"No index at {folder}: build one first with `mamba-retrieval index SOURCE "
                                    f"--index {folder}` (or pass --source to search).")
        meta = json.loads((folder / INDEX_FILE).read_text())
        embeddings = np.load(folder / EMBEDDINGS_FILE)
        if len(meta["documents"]) != len(embeddings):
            raise ValueError(f"The index at {folder} is inconsistent ({len(meta['documents'])} documents, "
                             f"{len(embeddings)} embeddings); rebuild it with --rebuild.")
        ids = [d["id"] for d in meta["documents"]]
        return cls(meta["model"], ids, [d["sha256"] for d in meta["documents"]], embeddings)

    def save(self, folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"format_version": FORMAT_VERSION, "model": self.model_name,
                "documents": [{"id": i, "sha256": h} for i, h in zip(self.ids, self.hashes)]}
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


def update_index(index_dir, documents, model_name, encode_documents, rebuild=False):
    """Embed only new or changed documents, drop removed ones, save; returns (index, counts).

    encode_documents(list of texts) -> (n, dim) float32 array of normalised embeddings.
    """
    index_dir = Path(index_dir)
    old = SearchIndex.load(index_dir) if (index_dir / INDEX_FILE).is_file() and not rebuild else None
    if old is not None and old.model_name != model_name:
        raise ValueError(f"The index at {index_dir} was built with model {old.model_name!r}, not {model_name!r}. "
                         "Pass --rebuild to re-embed everything with the new model, or use another --index.")
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
