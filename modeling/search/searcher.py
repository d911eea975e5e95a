"""Build, update and query search indexes with a retriever (any sentence-transformers model), or rank with bm25.

Each source has its own index for each model: by default `<cache>/indexes/<source name>-<hash of the resolved
source path and the model>` (data_files.cache_dir), so indexing another folder never replaces this one's index.
An index records its source, and an update from another source is refused.
"""

import functools
import hashlib
import sys
from pathlib import Path

from mamba_retrieval.modeling.data_files import cache_dir
from mamba_retrieval.modeling.file_hashes import model_identity, names_model
from mamba_retrieval.modeling.pretrained import BM25_PARAMETERS
from mamba_retrieval.modeling.safe_paths import path_component
from mamba_retrieval.modeling.search.documents import read_source
from mamba_retrieval.modeling.search.index import SearchIndex, update_index


def default_index(source, model):
    """The index folder of `source` (a path) searched with `model` (a located name or folder)."""
    source = Path(source).resolve()
    key = hashlib.sha256(f"{source}\0{model}".encode()).hexdigest()[:16]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in source.name).strip(".") or "root"
    return cache_dir("indexes", path_component(f"{name}-{key}", "index name"))


def load_encoder(model, max_length=None, device=None):
    """The SentenceTransformer for `model` (a located name or folder) on `device` (None: CUDA if there is one)."""
    import torch
    from sentence_transformers import SentenceTransformer

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    encoder = SentenceTransformer(model, trust_remote_code=True, device=device)
    if max_length:
        encoder.max_seq_length = max_length
    return encoder


@functools.lru_cache(maxsize=4)
def longest_token(tokenizer):
    """The most characters one token of `tokenizer` stands for (512 in GPT-NeoX-20B: a run of spaces)."""
    return max(len(tokenizer.convert_tokens_to_string([token])) for token in tokenizer.get_vocab())


def usable_prefixes(texts, encoder):
    """Each text cut to what the model's token limit can use: its first max_seq_length tokens lie within
    max_seq_length * longest_token characters, so the embedding is the same, and a 50 MB file is not tokenized
    whole (that took 6.7 GB) to keep 512 tokens of it."""
    limit = encoder.max_seq_length * longest_token(encoder.tokenizer) if encoder.max_seq_length else None
    return [text[:limit] if limit else text for text in texts]


class Retriever:
    """A dense retriever for one command: its identity hashed once, its model loaded once (when first needed)."""

    def __init__(self, model, batch_size=8, max_length=None):
        self.model, self.batch_size, self.max_length = model, batch_size, max_length

    @functools.cached_property
    def identity(self):
        return model_identity(self.model)

    @functools.cached_property
    def encoder(self):
        return load_encoder(self.model, self.max_length)

    def names(self, stored):
        return names_model(stored, self.model, self.identity)

    def encode_documents(self, texts):
        return self.encoder.encode_document(
            usable_prefixes(texts, self.encoder),
            batch_size=self.batch_size,
            show_progress_bar=True,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )

    def encode_query(self, query):
        return self.encoder.encode_query([query], normalize_embeddings=True, convert_to_numpy=True)[0]


def build_or_update(source, index_dir, retriever, rebuild=False):
    """Embed what is new or changed in `source` into the index at `index_dir`; returns the index."""
    report = read_source(source)
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    index, counts = update_index(
        index_dir,
        report.documents,
        retriever.identity,
        retriever.encode_documents,
        rebuild=rebuild,
        names_model=retriever.names,
        source=str(Path(source).resolve()),
    )
    print(
        f"index of {Path(source).resolve()} at {index_dir}: {counts['embedded']} embedded, {counts['unchanged']} "
        f"unchanged, {counts['removed']} removed, {len(report.skipped)} skipped",
        file=sys.stderr,
    )
    return index


def search(query, index_dir, retriever, k=10):
    """(id, score) of the `k` best documents of the index at `index_dir`, and the index."""
    if not query.strip():
        raise ValueError("The query is empty.")
    index = SearchIndex.load(index_dir)
    if not retriever.names(index.model_name):
        raise ValueError(
            f"The index at {index_dir} was built with {index.model_name!r}; search it with the same "
            "--model, or rebuild it with `mamba-retrieval index SOURCE --rebuild`."
        )
    return index.search(retriever.encode_query(query), k), index


def bm25_search(query, source, k=10):
    """(id, score) of the `k` best documents of `source` by BM25 (bm25s, Anserini's BEIR k1 and b, English stop
    words), ranked from the files themselves: BM25 needs no model and no saved index."""
    if not query.strip():
        raise ValueError("The query is empty.")
    try:
        import bm25s
    except ImportError:
        raise ValueError("--model bm25 needs bm25s: pip install 'mamba-retrieval[search]'.") from None
    documents = read_source(source).documents
    if not documents:
        return []
    tokens = bm25s.tokenize([d.text for d in documents], stopwords="en", show_progress=False)
    retriever = bm25s.BM25(**BM25_PARAMETERS)
    retriever.index(tokens, show_progress=False)
    query_tokens = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
    scores = retriever.get_scores(query_tokens)
    top = sorted(range(len(documents)), key=lambda row: (-scores[row], row))[:k]
    return [(documents[row].id, float(scores[row])) for row in top]
