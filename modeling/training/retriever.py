"""The Mamba Retriever training recipe on sentence-transformers' trainer.

InfoNCE with temperature 0.01 (`MultipleNegativesRankingLoss` with scale 100; the cached variant keeps large batches
within a small GPU's memory), in-batch negatives plus BM25-mined hard negatives, separate query and passage lengths.
The result is a Hub folder with remote code, written by the same writer as every other folder.
"""

import json
import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from mamba_retrieval.modeling.data_files import document_text, numbered_jsonl, read_corpus, read_qrels, read_queries
from mamba_retrieval.modeling.hub_folder import check_output_dir, write_hub_folder

TEMPERATURE = 0.01  # the paper's InfoNCE temperature


@dataclass
class Example:
    query: str
    positive: str
    negatives: list


def read_examples(path, split="train"):
    """Training pairs from a JSONL file ({"query", "positive", optional "negatives"}) or a BEIR folder (split)."""
    path = Path(path)
    if path.is_dir():
        return read_beir_examples(path, split)
    examples = []
    for where, row in numbered_jsonl(path):
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("query"), str)
            or not isinstance(row.get("positive"), str)
        ):
            raise ValueError(
                f"{where}: each line needs string fields 'query' and 'positive' (and optionally a list 'negatives')."
            )
        examples.append(Example(row["query"], row["positive"], list(row.get("negatives", []))))
    if not examples:
        raise ValueError(f"{path} holds no training pairs.")
    return examples


def read_beir_examples(folder, split):
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise FileNotFoundError(f"{folder} has no qrels/{split}.tsv; pass --split with a split it has.")
    queries = dict(read_queries(folder / "queries.jsonl"))
    corpus = {doc_id: document_text(title, text) for doc_id, title, text in read_corpus(folder)}
    examples = [
        Example(queries[query_id], corpus[doc_id], [])
        for query_id, judged in read_qrels(qrels_path).items()
        for doc_id, score in judged.items()
        if score > 0 and query_id in queries and doc_id in corpus
    ]
    if not examples:
        raise ValueError(f"{qrels_path} names no (query, relevant document) pair present in the folder.")
    return examples


def mine_bm25_negatives(examples, corpus, count, skip=3, seed=0):
    """Add `count` BM25 negatives per query: corpus passages ranked high for the query that are not its positive.

    The top `skip` ranks are passed over: on real data they are often unlabelled positives.
    """
    import bm25s

    corpus = sorted(set(corpus) | {e.positive for e in examples})
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(corpus, show_progress=False), show_progress=False)
    depth = min(len(corpus), skip + count + 5)
    rows, _ = retriever.retrieve(
        bm25s.tokenize([e.query for e in examples], show_progress=False), k=depth, show_progress=False
    )
    rng = random.Random(seed)
    for example, ranked in zip(examples, rows):
        candidates = [corpus[i] for i in ranked if corpus[i] != example.positive]
        chosen = candidates[skip : skip + count] or candidates[:count]
        while len(chosen) < count:  # tiny corpora: fill with random passages rather than leave columns ragged
            chosen.append(rng.choice([p for p in corpus if p != example.positive]))
        example.negatives = example.negatives + chosen
    return examples


def truncate_queries(examples, tokenizer, max_tokens):
    """Cut each query to `max_tokens` tokens (the EOS is appended after this, and never cut)."""
    for example in examples:
        ids = tokenizer(example.query, add_special_tokens=False)["input_ids"]
        if len(ids) > max_tokens:
            example.query = tokenizer.decode(ids[:max_tokens])
    return examples


def to_dataset(examples):
    from datasets import Dataset

    negatives = min(len(e.negatives) for e in examples)
    columns = {"anchor": [e.query for e in examples], "positive": [e.positive for e in examples]}
    for i in range(negatives):
        columns[f"negative_{i + 1}"] = [e.negatives[i] for e in examples]
    return Dataset.from_dict(columns)


def load_start(folder, passage_max_length):
    """The SentenceTransformer of a retriever Hub folder, with the passage length of the run."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), trust_remote_code=True)
    model.max_seq_length = passage_max_length
    return model


def train_retriever(start, examples, out_dir, settings, prompts=None, force=False, corpus=(), start_name=None):
    """Train the retriever Hub folder `start` on `examples`; write the trained Hub folder to `out_dir`. Returns the
    trainer's log. `start` must be a retriever Hub folder (for a named size or an `*-hf` folder, write one first
    with conversion.base_models.init_retriever, as `mamba-retrieval train` does); `start_name` is what the record
    calls the start (default: the folder)."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    check_output_dir(out_dir, force, sources=[start])
    with tempfile.TemporaryDirectory(prefix="mamba-retrieval-train-") as work_dir:
        model = load_start(start, settings.passage_max_length)
        prompts = {**model.prompts, **(prompts or {})}
        examples = truncate_queries(examples, model.tokenizer, settings.query_max_length)
        if settings.hard_negatives:
            examples = mine_bm25_negatives(examples, corpus, settings.hard_negatives, seed=settings.seed)
        dataset = to_dataset(examples)
        column_prompts = {
            name: prompts.get("query" if name == "anchor" else "document", "") for name in dataset.column_names
        }
        scale = 1 / TEMPERATURE
        if settings.cached_mini_batch_size:
            loss = CachedMultipleNegativesRankingLoss(
                model, scale=scale, mini_batch_size=settings.cached_mini_batch_size
            )
        else:
            loss = MultipleNegativesRankingLoss(model, scale=scale)
        args = SentenceTransformerTrainingArguments(
            output_dir=str(Path(work_dir) / "trainer"),
            per_device_train_batch_size=settings.batch_size,
            num_train_epochs=settings.epochs,
            max_steps=settings.max_steps,
            learning_rate=settings.learning_rate,
            warmup_steps=settings.warmup_ratio,  # transformers 5 reads a float below 1 as a ratio
            **({"gradient_checkpointing": True} if settings.gradient_checkpointing else {}),
            bf16=settings.bf16,
            seed=settings.seed,
            logging_steps=settings.logging_steps,
            save_strategy="no",
            report_to="none",
            batch_sampler="no_duplicates",  # duplicate passages in a batch would be false in-batch negatives
            prompts=column_prompts,
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
        trainer.train()
        log = trainer.state.log_history
        record = {
            "start": str(start_name or start),
            "examples": len(examples),
            "columns": dataset.column_names,
            "temperature": TEMPERATURE,
            "loss": type(loss).__name__,
            "settings": asdict(settings),
            "log": log,
        }
        transformer = model[0]
        write_hub_folder(
            transformer.auto_model,
            transformer.tokenizer,
            out_dir,
            max_seq_length=settings.passage_max_length,
            prompts=prompts,
            extra_files={"training.json": json.dumps(record, indent=2) + "\n"},
            force=force,
        )
    return log
