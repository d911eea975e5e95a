"""Build, update and query a search index with a retriever (any sentence-transformers model)."""

import functools
import hashlib
import sys
from pathlib import Path

from mamba_retrieval.modeling.file_hashes import update_digest, weights_hash
from mamba_retrieval.modeling.pretrained import SHIPPED_MODELS
from mamba_retrieval.modeling.search.documents import read_source
from mamba_retrieval.modeling.search.index import SearchIndex, update_index


def model_identity(model):
    """What the index records about its model: a local folder by path and weights hash, anything else by name."""
    folder = Path(model)
    if not folder.is_dir():
        return model
    return f"{folder.resolve()}#{weights_hash(folder)}"


def names_model(stored, model, identity):
    """True when an index's stored model identity is `model`'s (`identity`, its model_identity). Indexes written
    before identities used file_hashes.weights_hash stored `path#<16 hex of the top-level weight files' bytes>`: they
    still match (and are saved under the current identity at their next update)."""
    if stored == identity:
        return True
    folder = Path(model)
    if not folder.is_dir() or not stored.startswith(f"{folder.resolve()}#") or "#sha256-" in stored:
        return False
    digest = hashlib.sha256()
    for weights in sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin")):
        update_digest(digest, weights)
    return stored == f"{folder.resolve()}#{digest.hexdigest()[:16]}"


@functools.lru_cache(maxsize=2)
def load_encoder(model, max_length=None):
    import torch
    from sentence_transformers import SentenceTransformer

    device = None if torch.cuda.is_available() else "cpu"
    try:
        encoder = SentenceTransformer(model, trust_remote_code=True, device=device)
    except OSError as error:  # not a folder here, and the Hub could not provide it (offline, or no such id)
        if Path(model).exists():
            raise
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"Cannot load --model {model!r}: it is no folder here, no shipped model ({', '.join(SHIPPED_MODELS)}), "
            f"and the Hugging Face Hub did not provide it ({reason}). Pass a model folder or a shipped model's name."
        ) from None
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


def build_or_update(source, index_dir, model, batch_size=8, max_length=None, rebuild=False):
    report = read_source(source)
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    encoder = None

    def encode(texts):
        nonlocal encoder
        encoder = encoder or load_encoder(model, max_length)
        texts = usable_prefixes(texts, encoder)
        return encoder.encode_document(
            texts, batch_size=batch_size, show_progress_bar=True, normalize_embeddings=True, convert_to_numpy=True
        )

    identity = model_identity(model)  # hashes the weights: once per run
    index, counts = update_index(
        index_dir,
        report.documents,
        identity,
        encode,
        rebuild=rebuild,
        names_model=lambda stored: names_model(stored, model, identity),
    )
    print(
        f"index {index_dir}: {counts['embedded']} embedded, {counts['unchanged']} unchanged, "
        f"{counts['removed']} removed, {len(report.skipped)} skipped",
        file=sys.stderr,
    )
    return index


def search(query, index_dir, model, k=10):
    index = SearchIndex.load(index_dir)
    if not names_model(index.model_name, model, model_identity(model)):
        raise ValueError(
            f"The index at {index_dir} was built with {index.model_name!r}; search it with the same "
            "--model, or rebuild it with `mamba-retrieval index SOURCE --rebuild`."
        )
    if not query.strip():
        raise ValueError("The query is empty.")
    query_embedding = load_encoder(model).encode_query([query], normalize_embeddings=True, convert_to_numpy=True)[0]
    return index.search(query_embedding, k)
