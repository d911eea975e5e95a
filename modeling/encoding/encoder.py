"""Embed a corpus into an embeddings folder (shards.py) on one machine: one process, or one per device through
sentence-transformers' multi-process pool.

The corpus is read as a stream (corpus_stream.py) and embedded one shard at a time: each shard's texts are one
`SentenceTransformer.encode` call, which sorts them by length before batching, so a batch pads to texts of about its
own length (padding is wasted scan work). Memory is bounded by the shard size, not by the corpus.

A rerun with the same model and settings continues after the last complete shard: the rows before it are read again
(ids and texts checked against each shard's texts_sha256, so a changed corpus is refused) but not embedded. A shard's
rows are embedded in the same call whether or not a run was interrupted, so the result is the same.

Empty texts (after title + text) are kept and embedded as they are (the tokenizer appends EOS, so they get the
model's embedding of an empty document): every id of the corpus has its row, and the manifest counts them.
"""

import logging
import time
from dataclasses import asdict, dataclass
from itertools import islice

import numpy as np
from tqdm.auto import tqdm

from mamba_retrieval.modeling.encoding.corpus_stream import corpus_kind, corpus_rows, iter_corpus
from mamba_retrieval.modeling.encoding.shards import PRECISIONS, ShardWriter, texts_digest
from mamba_retrieval.modeling.file_hashes import model_identity
from mamba_retrieval.modeling.search.searcher import load_encoder, usable_prefixes

logger = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 10_000
NO_PROMPT = "none"


@dataclass(frozen=True)
class EncodeSettings:
    """What decides the embeddings of a folder (a rerun must match them): recorded in the manifest."""

    max_length: int | None = None  # tokens per text; None: the model's max_seq_length
    precision: str = "float32"
    prompt_name: str = "document"  # a prompt of the model's config_sentence_transformers.json, or "none"
    batch_size: int = 32
    shard_size: int = DEFAULT_SHARD_SIZE

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}.")
        for name in ("batch_size", "shard_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, not {getattr(self, name)!r}.")


def load_model(model, settings, device=None):
    """search's load_encoder, with the settings' max length; an unknown prompt name is refused before any work."""
    encoder = load_encoder(model, settings.max_length, device)
    prompt_of(encoder, settings)
    return encoder


def prompt_of(encoder, settings):
    """The prompt string the settings' prompt name stands for in `encoder` (None for "none")."""
    if settings.prompt_name == NO_PROMPT:
        return None
    if settings.prompt_name not in encoder.prompts:
        known = ", ".join(encoder.prompts) or "none"
        raise ValueError(
            f"The model has no prompt {settings.prompt_name!r} (its prompts: {known}); pass --prompt-name with one of "
            f"them, or --prompt-name {NO_PROMPT} to embed the texts as they are."
        )
    return encoder.prompts[settings.prompt_name]


def embed(encoder, texts, settings, pool=None):
    """float32 embeddings of `texts` as the model makes them (its Normalize module included), in `texts`' order."""
    return encoder.encode(
        usable_prefixes(texts, encoder),  # a 50 MB text is cut to what max_seq_length can use before tokenizing
        prompt_name=None if settings.prompt_name == NO_PROMPT else settings.prompt_name,
        batch_size=settings.batch_size,
        convert_to_numpy=True,
        show_progress_bar=False,
        pool=pool,
        chunk_size=None if pool is None else max(1, -(-len(texts) // len(pool["processes"]))),
    ).astype(np.float32, copy=False)


def to_stored(embeddings, precision, ranges=None):
    """float32 embeddings in the folder's stored precision (sentence-transformers' quantize_embeddings for the
    integer ones; int8/uint8 with the folder's fixed `ranges`)."""
    if precision == "float32":
        return embeddings
    if precision == "float16":
        return embeddings.astype(np.float16)
    from sentence_transformers.util.quantization import quantize_embeddings

    return quantize_embeddings(embeddings, precision=precision, ranges=ranges)


def dimension(encoder):
    """The embedding size (sentence-transformers 6 renamed the method)."""
    named = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    return named()


def header_for(model, encoder, settings):
    """The manifest's header: model name and identity, settings (the prompt string too), dimension, precision."""
    recorded = {**asdict(settings), "max_length": encoder.max_seq_length, "prompt": prompt_of(encoder, settings)}
    return {
        "model": str(model),
        "model_identity": model_identity(model),
        "settings": recorded,
        "dimension": dimension(encoder),
        "precision": settings.precision,
    }


def count_tokens(encoder, texts):
    """Tokens the model reads for `texts` (truncated at max_seq_length), for the progress bar's tokens/s."""
    texts = usable_prefixes(texts, encoder)  # a huge text is not tokenized whole just to be counted
    encoded = encoder.tokenizer(texts, truncation=True, max_length=encoder.max_seq_length, add_special_tokens=True)
    return sum(len(ids) for ids in encoded["input_ids"])


def shards_of(rows, size):
    """Lists of up to `size` (id, text) rows."""
    rows = iter(rows)
    while chunk := list(islice(rows, size)):
        yield chunk


def count_empty(corpus, rows):
    """Empty texts among the first `rows` documents of the corpus."""
    return sum(not text.strip() for _, text in islice(iter_corpus(corpus), rows))


def skip_done(shards, writer, out_dir):
    """Check the corpus's first shards against the ones `writer` already has; yields the shards still to embed."""
    done = writer.shards
    for number, chunk in enumerate(shards):
        if number >= len(done):
            yield chunk
            continue
        ids, texts = zip(*chunk)
        entry = done[number]
        if len(chunk) != entry["rows"] or texts_digest(ids, texts) != entry.get("texts_sha256"):
            raise ValueError(
                f"{out_dir}/{entry['file']} was embedded from other documents than the corpus's rows "
                f"{number * writer.header['settings']['shard_size']}-... now (the corpus changed); give a new output "
                "folder."
            )


def encode_corpus(corpus, out_dir, model, settings=None, devices=None, progress=True):
    """Embed the corpus at `corpus` into the embeddings folder `out_dir` with `model` (a located name or folder);
    `devices` (e.g. ["cuda:0", "cuda:1"] or ["cpu", "cpu"]) runs one process per entry. Returns the manifest."""
    settings = settings or EncodeSettings()
    corpus_kind(corpus)  # a missing or unknown corpus is refused before the model loads
    encoder = load_model(model, settings, device=devices[0] if devices and len(devices) == 1 else None)
    writer = ShardWriter(out_dir, header_for(model, encoder, settings))
    pool = encoder.start_multi_process_pool(list(devices)) if devices and len(devices) > 1 else None
    try:
        return _encode(corpus, out_dir, encoder, settings, writer, pool, progress)
    finally:
        if pool is not None:
            encoder.stop_multi_process_pool(pool)


def _encode(corpus, out_dir, encoder, settings, writer, pool, progress):
    empty = [0]

    def counted(rows):
        for doc_id, text in rows:
            empty[0] += not text.strip()
            yield doc_id, text

    total = corpus_rows(corpus)
    shards = skip_done(shards_of(counted(iter_corpus(corpus)), settings.shard_size), writer, out_dir)
    tokens, started = 0, time.perf_counter()
    with tqdm(total=total, initial=writer.rows, unit="doc", desc="encode", disable=not progress) as bar:
        for chunk in shards:
            ids, texts = map(list, zip(*chunk))
            embeddings = embed(encoder, texts, settings, pool)
            if settings.precision in ("int8", "uint8") and writer.quantization_ranges is None:
                if len(embeddings) < 2:
                    raise ValueError(f"{settings.precision} needs at least 2 documents to set its ranges from.")
                # the first shard sets the ranges for all: every shard (and a rerun) quantizes alike
                writer.set_quantization_ranges(np.vstack((embeddings.min(axis=0), embeddings.max(axis=0))))
            stored = to_stored(embeddings, settings.precision, writer.quantization_ranges)
            writer.write(ids, stored, texts_sha256=texts_digest(ids, texts))
            tokens += count_tokens(encoder, texts)
            bar.update(len(ids))
            bar.set_postfix(tokens_per_s=f"{tokens / (time.perf_counter() - started):,.0f}")
    if writer.rows == 0:
        raise ValueError(f"{corpus} holds no documents.")
    if empty[0]:
        logger.warning("%d documents have an empty text; they are embedded as empty documents (ids kept).", empty[0])
    writer.finish(empty_texts=empty[0])
    return writer.manifest
