"""A corpus read row by row, never whole: a JSONL file (plain or gzip), a BEIR folder (its corpus.jsonl), a Parquet
file, or a `datasets` folder saved with `save_to_disk`. Each row is an object with `_id` (or `id`), `text` and an
optional `title`; the text embedded is data_files.document_text(title, text), as the search index does.

Ids must be unique (an id again is a one-line error naming it and where it was seen again): the embeddings are
looked up by id. Only the ids are kept in memory for that check.
"""

from pathlib import Path

from mamba_retrieval.modeling.data_files import document_text, numbered_jsonl

READ_ROWS = 2048  # rows per Parquet or datasets batch read


def corpus_kind(path):
    """'jsonl', 'parquet' or 'datasets' for the corpus at `path` (a BEIR folder is its corpus.jsonl), and the file
    or folder to read; anything else is a one-line error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"Corpus {path} not found: give a JSONL or Parquet file, a BEIR folder or a datasets folder."
        )
    if path.is_dir():
        if (path / "corpus.jsonl").is_file():
            return "jsonl", path / "corpus.jsonl"
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            return "datasets", path
        raise ValueError(
            f"{path} is a folder without corpus.jsonl (BEIR) or dataset_info.json (datasets save_to_disk); give the "
            "corpus file itself."
        )
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet", path
    if name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
        return "jsonl", path
    raise ValueError(f"{path}: expected a .jsonl (or .jsonl.gz) or .parquet file, a BEIR folder or a datasets folder.")


def corpus_rows(path):
    """The number of rows when the format states it (Parquet metadata, a datasets folder), else None."""
    kind, path = corpus_kind(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if kind == "datasets":
        return len(_load_dataset(path))
    return None


def iter_corpus(path):
    """(id, text) of each document of the corpus at `path`, in file order, read in small pieces."""
    kind, path = corpus_kind(path)
    rows = {"jsonl": _jsonl_rows, "parquet": _parquet_rows, "datasets": _datasets_rows}[kind](path)
    seen = set()
    for where, row in rows:
        doc_id = row.get("_id", row.get("id")) if isinstance(row, dict) else None
        title = row.get("title") if isinstance(row, dict) else None
        if doc_id is None or not isinstance(row.get("text"), str) or not isinstance(title, (str, type(None))):
            raise ValueError(
                f"{where}: expected an object with '_id' (or 'id'), a string 'text' and an optional string 'title'."
            )
        doc_id = str(doc_id)
        if doc_id in seen:  # two documents under one id: the embeddings could not be told apart
            raise ValueError(f"{where}: document id {doc_id!r} again; ids must be unique.")
        seen.add(doc_id)
        yield doc_id, document_text(title, row["text"])


def _jsonl_rows(path):
    return numbered_jsonl(path)


def _columns(names, path):
    wanted = [name for name in ("_id", "id", "title", "text") if name in names]
    if "text" not in wanted or not {"_id", "id"} & set(wanted):
        raise ValueError(f"{path} has columns {', '.join(names)}; a corpus needs '_id' (or 'id') and 'text'.")
    return wanted


def _parquet_rows(path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("A Parquet corpus needs pyarrow: pip install 'mamba-retrieval[encode]'.") from None
    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # noqa: BLE001 - pyarrow raises several types for a file that is not Parquet
        raise ValueError(f"{path} is not a readable Parquet file ({error}).") from None
    start = 0
    for batch in parquet.iter_batches(batch_size=READ_ROWS, columns=_columns(parquet.schema_arrow.names, path)):
        for offset, row in enumerate(batch.to_pylist()):
            yield f"{path} row {start + offset}", row
        start += batch.num_rows


def _load_dataset(path):
    try:
        import datasets
    except ImportError:
        raise ValueError("A datasets folder as corpus needs datasets: pip install 'mamba-retrieval[encode]'.") from None
    dataset = datasets.load_from_disk(str(path))  # memory-mapped Arrow files: nothing is read whole
    if isinstance(dataset, datasets.DatasetDict):
        if len(dataset) != 1:
            raise ValueError(
                f"{path} holds the splits {', '.join(dataset)}; give one split's folder ({path}/<split>) as corpus."
            )
        dataset = next(iter(dataset.values()))
    return dataset


def _datasets_rows(path):
    dataset = _load_dataset(path)
    dataset = dataset.select_columns(_columns(dataset.column_names, path))
    for number, row in enumerate(dataset):
        yield f"{path} row {number}", row
