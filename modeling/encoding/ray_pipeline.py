"""The encoder of encoder.py as a Ray Data pipeline, for a cluster: `read_json` / `read_parquet` -> `map_batches`
with an actor pool (one model per actor, `num_gpus` per actor on a GPU cluster) -> the same embeddings folder.

The shards are written by the driver from the pipeline's ordered output (`preserve_order`), with the same writer as
one machine: the shard format is a manifest with per-shard hashes, in corpus order, resumable, and those need one
writer (Ray's `write_parquet` names and splits files its own way). The driver receives only ids, texts and
embeddings; the model runs in the actors. The model folder and the corpus must be readable at the same path on every
node (a shared file system, or a Hub id the nodes can download).
"""

import logging

import numpy as np
from tqdm.auto import tqdm

from mamba_retrieval.modeling.data_files import document_text
from mamba_retrieval.modeling.encoding.corpus_stream import corpus_kind, iter_corpus
from mamba_retrieval.modeling.encoding.encoder import (
    EncodeSettings,
    count_empty,
    dimension,
    embed,
    header_for,
    load_model,
    shards_of,
    skip_done,
    to_stored,
)
from mamba_retrieval.modeling.encoding.shards import ShardWriter, iter_shards, texts_digest

logger = logging.getLogger(__name__)


def _documents(batch):
    """Ray batch of a corpus (`_id` or `id`, `text`, optional `title`) -> `id` and the text to embed."""
    ids = batch["_id"] if "_id" in batch else batch["id"]
    titles = batch["title"] if "title" in batch else [None] * len(ids)
    texts = [document_text(title, text) for title, text in zip(titles, batch["text"])]
    return {"id": np.asarray([str(i) for i in ids], dtype=object), "text": np.asarray(texts, dtype=object)}


class Embedder:
    """One actor of the pool: loads the model once (on its GPU when Ray gives it one), embeds batches."""

    def __init__(self, model, settings, done_ids):
        self.encoder, self.settings, self.done = load_model(model, settings), settings, done_ids
        self.dimension = dimension(self.encoder)

    def __call__(self, batch):
        keep = np.asarray([doc_id not in self.done for doc_id in batch["id"]], dtype=bool)
        ids, texts = batch["id"][keep], batch["text"][keep]
        if not len(ids):
            return {"id": ids, "text": texts, "embedding": np.zeros((0, self.dimension), np.float32)}
        return {"id": ids, "text": texts, "embedding": embed(self.encoder, list(texts), self.settings)}


def encode_corpus_ray(
    corpus, out_dir, model, settings=None, address=None, actors=1, gpus_per_actor=0.0, cpus_per_actor=1.0, progress=True
):
    """Embed the corpus at `corpus` (JSONL, a BEIR folder or Parquet) into the embeddings folder `out_dir` on the
    Ray cluster at `address` (None: the one this process is connected to, else a new local one), `actors` model
    copies with `cpus_per_actor` CPUs and `gpus_per_actor` GPUs each. The folder is the one encoder.encode_corpus
    writes (and resumes)."""
    settings = settings or EncodeSettings()
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs Ray Data: pip install 'mamba-retrieval[ray]'.") from None
    kind, path = corpus_kind(corpus)
    if kind not in ("jsonl", "parquet") or path.name.endswith(".gz"):
        raise ValueError(f"--ray reads an uncompressed JSONL file, a BEIR folder or Parquet; {corpus} is {kind}.")
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    cpus = ray.cluster_resources().get("CPU", 0)
    if actors * cpus_per_actor > cpus - 1:  # Ray Data's file listing needs a whole CPU; without one it waits forever
        raise ValueError(
            f"{actors} actors x {cpus_per_actor:g} CPUs leave less than the one CPU Ray Data needs to read, of the "
            f"cluster's {cpus:g}: pass fewer --ray-actors (or --ray-cpus-per-actor)."
        )
    encoder = load_model(model, settings, device="cpu")  # the header (dimension, prompt) and a fast refusal
    writer = ShardWriter(out_dir, header_for(model, encoder, settings))
    del encoder
    done_ids, empty = set(), 0
    if writer.shards:
        # a rerun: the corpus is read here once, whole, to check the written shards against it and every id for
        # uniqueness; the written rows are then left out of the pipeline by id
        for _ in skip_done(shards_of(iter_corpus(corpus), settings.shard_size), writer, out_dir):
            pass
        for ids, _ in iter_shards(out_dir, require_complete=False):
            done_ids.update(ids)
        empty = count_empty(corpus, len(done_ids))
    ray.data.DataContext.get_current().execution_options.preserve_order = True  # shards in corpus order
    reader = ray.data.read_json if kind == "jsonl" else ray.data.read_parquet
    embedded = (
        reader(str(path))
        .map_batches(_documents, batch_format="numpy")
        .map_batches(
            Embedder,
            fn_constructor_args=(model, settings, frozenset(done_ids)),
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=gpus_per_actor,
            num_cpus=cpus_per_actor,
            batch_size=settings.batch_size * 16,
            batch_format="numpy",
        )
    )
    seen = set(done_ids)
    with tqdm(initial=writer.rows, unit="doc", desc="encode (ray)", disable=not progress) as bar:
        for batch in embedded.iter_batches(batch_size=settings.shard_size, batch_format="numpy"):
            ids, texts = [str(i) for i in batch["id"]], [str(t) for t in batch["text"]]
            for doc_id in ids:
                if doc_id in seen:
                    raise ValueError(f"{corpus}: document id {doc_id!r} again; ids must be unique.")
                seen.add(doc_id)
            empty += sum(not text.strip() for text in texts)
            embeddings = np.asarray(batch["embedding"], dtype=np.float32)
            if settings.precision in ("int8", "uint8") and writer.quantization_ranges is None:
                writer.set_quantization_ranges(np.vstack((embeddings.min(axis=0), embeddings.max(axis=0))))
            stored = to_stored(embeddings, settings.precision, writer.quantization_ranges)
            writer.write(ids, stored, texts_sha256=texts_digest(ids, texts))
            bar.update(len(ids))
    if writer.rows == 0:
        raise ValueError(f"{corpus} holds no documents.")
    writer.finish(empty_texts=empty)
    return writer.manifest
