"""Distil a small Mamba retriever from all-MiniLM-L6-v2, offline, on the training text in ../shared/data.

Loss = InfoNCE on (query, passage) pairs (temperature 0.01, in-batch negatives) + `weight` x MSE between the
student's and the teacher's cosine-similarity matrices over all texts of the batch. Matching similarities rather
than vectors lets the student keep its own width (the teacher is 384-d). Teacher embeddings are computed once and
cached in a file keyed by text, so an interrupted run resumes without re-encoding.

Only training splits are read: WordNet glosses (word -> definition, example -> definition) and the `train` split of
the QMSum query -> span pairs. SciFact, the MS MARCO mini set and QMSum test queries are evaluation data and never
appear here.
"""

import gzip
import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .training import TEMPERATURE


@dataclass
class Pair:
    query: str
    passage: str


def wordnet_pairs(path, limit=None, seed=0):
    """(lemma words -> definition) and (example sentence -> definition) pairs from the WordNet gloss file."""
    pairs = []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            synset = json.loads(line)
            definition = synset["definition"]
            pairs.append(Pair(", ".join(w.replace("_", " ") for w in synset["words"]), definition))
            pairs.extend(Pair(example, definition) for example in synset["examples"])
    random.Random(seed).shuffle(pairs)
    return pairs[:limit] if limit else pairs


def qmsum_span_pairs(path, max_passage_chars=4000):
    """Train-split QMSum (query -> relevant transcript span) pairs; other splits are never read into training."""
    pairs = []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if row["split"] == "train":
                pairs.append(Pair(row["query"], row["relevant_span"][:max_passage_chars]))
    return pairs


class TeacherCache:
    """Teacher embeddings by text (sha256), stored as one .npz; `ensure` encodes only what is missing."""

    def __init__(self, path, teacher):
        self.path, self.teacher = Path(path), teacher
        self.vectors = {}
        if self.path.is_file():
            with np.load(self.path) as stored:
                self.vectors = dict(zip(stored["keys"].tolist(), stored["vectors"]))

    @staticmethod
    def key(text):
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def ensure(self, texts, batch_size=64, save_every=20_000):
        missing = sorted({t for t in texts if self.key(t) not in self.vectors})
        for start in range(0, len(missing), save_every):
            chunk = missing[start:start + save_every]
            vectors = self.teacher.encode(chunk, batch_size=batch_size, normalize_embeddings=True,
                                          convert_to_numpy=True, show_progress_bar=len(chunk) > batch_size)
            self.vectors.update({self.key(t): v.astype(np.float16) for t, v in zip(chunk, vectors)})
            self.save()  # resumable: what is encoded is kept even if the run stops later

    def save(self):
        keys = np.array(list(self.vectors))
        vectors = np.stack(list(self.vectors.values())) if self.vectors else np.zeros((0, 0), np.float16)
        temporary = self.path.with_suffix(".partial.npz")
        np.savez(temporary, keys=keys, vectors=vectors)
        temporary.replace(self.path)

    def get(self, texts):
        return torch.from_numpy(np.stack([self.vectors[self.key(t)] for t in texts]).astype(np.float32))


def distillation_loss(query_embeddings, passage_embeddings, teacher_queries, teacher_passages, weight):
    """InfoNCE over in-batch passages + weight * MSE of the cosine-similarity matrices over all 2B texts."""
    student = F.normalize(torch.cat([query_embeddings, passage_embeddings]), dim=-1)
    teacher = F.normalize(torch.cat([teacher_queries, teacher_passages]), dim=-1)
    batch = query_embeddings.shape[0]
    scores = student[:batch] @ student[batch:].T / TEMPERATURE
    contrastive = F.cross_entropy(scores, torch.arange(batch, device=scores.device))
    similarity = F.mse_loss(student @ student.T, teacher @ teacher.T)
    return contrastive + weight * similarity, contrastive.detach(), similarity.detach()


def encode_batch(model, tokenizer, texts, max_length):
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return model(**batch).sentence_embedding


def distil(model, tokenizer, pairs, cache, *, steps, batch_size=32, learning_rate=1e-3, weight=10.0,
           query_max_length=32, passage_max_length=256, seed=0, log_every=50, prompts=None):
    """Train `model` (a MambaForRetrieval) in place; returns the log [{step, loss, contrastive, similarity}]."""
    prompts = prompts or {"query": "", "document": ""}
    cache.ensure([p.query for p in pairs] + [p.passage for p in pairs])
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, betas=(0.9, 0.95), weight_decay=0.01)
    warmup = max(1, steps // 20)  # 5% linear warm-up, then cosine decay to zero
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 0.5 * (
        1 + math.cos(math.pi * min(1.0, (s + 1 - warmup) / max(1, steps - warmup))))))
    model.train()
    log = []
    for step in range(1, steps + 1):
        batch = _distinct_passages(rng.sample(pairs, min(len(pairs), 2 * batch_size)), batch_size)
        queries = encode_batch(model, tokenizer, [prompts["query"] + p.query for p in batch], query_max_length)
        passages = encode_batch(model, tokenizer, [prompts["document"] + p.passage for p in batch],
                                passage_max_length)
        loss, contrastive, similarity = distillation_loss(
            queries, passages, cache.get([p.query for p in batch]), cache.get([p.passage for p in batch]), weight)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % log_every == 0 or step in (1, steps):
            log.append({"step": step, "loss": loss.item(), "contrastive": contrastive.item(),
                        "similarity": similarity.item()})
    model.eval()
    return log


def _distinct_passages(candidates, size):
    """In-batch negatives must be negatives: at most one pair per passage (WordNet examples share definitions)."""
    seen, batch = set(), []
    for pair in candidates:
        if pair.passage not in seen:
            seen.add(pair.passage)
            batch.append(pair)
        if len(batch) == size:
            break
    return batch
