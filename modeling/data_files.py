"""The one reader of the data files every part reads: JSONL (plain or gzip), BEIR folders (corpus, queries, qrels),
where the project's offline data lives, and where the package caches what it can rebuild.

The offline data (../shared/data in a checkout, see its README) is found through `data_dir()`: the environment
variable MAMBA_RETRIEVAL_DATA, else `../shared/data` from the current folder (the checkout's root), never from where
the package is installed.
"""

import contextlib
import gzip
import json
import os
import tempfile
from pathlib import Path

DATA_ENV = "MAMBA_RETRIEVAL_DATA"
CACHE_ENV = "MAMBA_RETRIEVAL_CACHE"
DEFAULT_DATA = Path("..", "shared", "data")
BEIR_FILES = ("corpus.jsonl", "queries.jsonl")


def data_dir(*parts):
    """The offline data folder ($MAMBA_RETRIEVAL_DATA, else ../shared/data), or a path inside it."""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA, *parts)


def cache_dir(*parts):
    """Where the package keeps what it can rebuild (search indexes, model identities): $MAMBA_RETRIEVAL_CACHE, else
    $XDG_CACHE_HOME/mamba-retrieval, else ~/.cache/mamba-retrieval; or a path inside it."""
    root = os.environ.get(CACHE_ENV) or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "mamba-retrieval"
    )
    return Path(root, *parts)


def data_name(path):
    """`path` as a record names it: shared/data/... inside the offline data folder (the same on every machine),
    else as given."""
    path, shared = Path(path).resolve(), data_dir().resolve()
    return str(Path("shared", "data", path.relative_to(shared))) if path.is_relative_to(shared) else str(path)


def numbered_jsonl(path):
    """(`path:line`, object) for each non-blank line of a JSONL file (`.gz` read as gzip); a line that is not JSON is
    an error naming it. The location is for the caller's own errors about the object."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as lines:
        for number, raw in enumerate(lines, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}:{number} is not UTF-8 text ({error.reason} at byte {error.start}).") from None
            if not line.strip():
                continue
            try:
                yield f"{path}:{number}", json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number} is not a JSON line ({error.msg}).") from None


def read_jsonl(path):
    """The objects of a JSONL file (`.gz` read as gzip), as a list."""
    return [row for _, row in numbered_jsonl(path)]


def read_json_object(path):
    """The JSON object in `path`; a file that is not one is an error naming the file."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}).") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}, not an object.")
    return value


def read_json_or_empty(path):
    """The JSON object in `path`, or {} when there is no such file (optional files of a Hub folder)."""
    path = Path(path)
    return read_json_object(path) if path.is_file() else {}


def _umask():
    mask = os.umask(0)  # (read only by setting it: put straight back)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path, mode="w"):
    """A file handle whose contents become `path` only when the block completes: written to a temporary file beside
    it, flushed to disk, then renamed over it (the rename made durable too). On error, `path` is untouched. The file
    gets the permissions a plain open() would give (mkstemp's 0600 would hide shards and records from other users)."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        os.fchmod(descriptor, 0o666 & ~_umask())
        with open(descriptor, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_text_atomic(path, text):
    """Write `text` to `path`, all or nothing: a run killed mid-write leaves the old file (or none), never half."""
    with atomic_file(path) as handle:
        handle.write(text)


def write_jsonl(path, rows):
    """Write `rows` as JSONL, all or nothing."""
    with atomic_file(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def document_text(title, text):
    """A document as one text: its title (if any), a space, its text."""
    return f"{title} {text}".strip() if title else text


def read_qrels(path):
    """A BEIR qrels TSV (query-id, corpus-id, integer score, then any further columns; a header line first, or not)
    -> {query id: {document id: score}}, queries in the order the file first names them."""
    qrels = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            fields = line.rstrip("\n").split("\t")
            if not line.strip() or number == 1 and fields[0] in ("query-id", "query_id", "qid"):
                continue
            if len(fields) < 3 or not fields[2].strip().lstrip("-").isdigit():
                raise ValueError(f"{path}:{number}: expected 'query-id<TAB>corpus-id<TAB>score', got {line!r}.")
            qrels.setdefault(fields[0], {})[fields[1]] = int(fields[2])
    return qrels


def read_queries(path):
    """(id, text) of every query of a BEIR queries.jsonl (`_id`, `text`); a row without them is an error naming it."""
    queries, seen = [], {}
    for where, row in numbered_jsonl(path):
        if not isinstance(row, dict) or "_id" not in row or not isinstance(row.get("text"), str):
            raise ValueError(f"{where}: expected a JSON object with '_id' and a string 'text'.")
        if str(row["_id"]) in seen:
            raise ValueError(f"{where}: query id {str(row['_id'])!r} again (first at {seen[str(row['_id'])]}).")
        seen[str(row["_id"])] = where
        queries.append((str(row["_id"]), row["text"]))
    return queries


def read_corpus(path):
    """(id, title, text) of every document of a JSONL corpus (BEIR `corpus.jsonl`: `_id`, optional `title`,
    `text`; `id` also accepted), or of a BEIR folder's corpus.jsonl; a row without them is an error naming it."""
    path = Path(path)
    if path.is_dir():
        path = path / "corpus.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"Corpus {path} not found: give a JSONL file of documents or a BEIR folder.")
    documents, seen = [], {}
    for where, row in numbered_jsonl(path):
        doc_id = row.get("_id", row.get("id")) if isinstance(row, dict) else None
        if doc_id is None or not isinstance(row.get("text"), str):
            raise ValueError(f"{where}: expected a JSON object with '_id' (or 'id') and a string 'text'.")
        if str(doc_id) in seen:  # two documents under one id: scores and index rows would be ambiguous
            raise ValueError(
                f"{where}: document id {str(doc_id)!r} again (first at {seen[str(doc_id)]}); ids must be unique."
            )
        seen[str(doc_id)] = where
        documents.append((str(doc_id), row.get("title") or "", row["text"]))
    if not documents:
        raise ValueError(f"{path} holds no documents.")
    return documents
