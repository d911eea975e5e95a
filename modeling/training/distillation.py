"""Distil a small Mamba retriever from all-MiniLM-L6-v2, offline, on the training text in ../shared/data.

Loss = InfoNCE on (query, passage) pairs (in-batch negatives; temperature 0.01 here, 0.05 from the CLI) + `weight`
x MSE between the student's and the teacher's cosine-similarity matrices over all texts of the batch. Matching
similarities rather than vectors lets the student keep its own width (the teacher is 384-d). Teacher embeddings are
computed once and cached in a file keyed by text, so an interrupted run resumes without re-encoding.

Only training splits are read: WordNet glosses (word -> definition, example -> definition) and the `train` split of
the QMSum query -> span pairs. SciFact, the MS MARCO mini set and QMSum test queries are evaluation data and never
appear here.
"""

import hashlib
import json
import math
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from mamba_retrieval.modeling.bag_forward import bag_embedding, check_bag_structure
from mamba_retrieval.modeling.data_files import read_corpus, read_jsonl, read_qrels
from mamba_retrieval.modeling.training.retriever import TEMPERATURE


@dataclass
class Pair:
    query: str
    passage: str


def wordnet_pairs(path, limit=None, seed=0):
    """(lemma words -> definition) and (example sentence -> definition) pairs from the WordNet gloss file."""
    pairs = []
    for synset in read_jsonl(path):
        definition = synset["definition"]
        pairs.append(Pair(", ".join(w.replace("_", " ") for w in synset["words"]), definition))
        pairs.extend(Pair(example, definition) for example in synset["examples"])
    random.Random(seed).shuffle(pairs)
    return pairs[:limit] if limit else pairs


def qmsum_span_pairs(path, max_passage_chars=4000):
    """Train-split QMSum (query -> relevant transcript span) pairs; other splits are never read into training."""
    return [
        Pair(row["query"], row["relevant_span"][:max_passage_chars])
        for row in read_jsonl(path)
        if row["split"] == "train"
    ]


def gloss_document_pairs(path, synsets_per_document=8, seed=0):
    """(example sentence -> short document of WordNet entries that holds its word's entry) pairs: the query shares
    a word, not a sentence, with its document, as a claim shares terms with an abstract. No teacher needed."""
    synsets = read_jsonl(path)
    rng = random.Random(seed)
    rng.shuffle(synsets)
    pairs = []
    for start in range(0, len(synsets) - synsets_per_document + 1, synsets_per_document):
        group = synsets[start : start + synsets_per_document]
        with_examples = [synset for synset in group if synset["examples"]]
        if not with_examples:
            continue
        entries = [
            f"{', '.join(w.replace('_', ' ') for w in synset['words'])}: {synset['definition']}" for synset in group
        ]
        pairs.append(Pair(rng.choice(rng.choice(with_examples)["examples"]), "\n".join(entries)))
    return pairs


def meeting_window_pairs(corpus_path, train_qrels_path, window_turns=12, seed=0, keep_query=0.1):
    """Inverse-cloze pairs from the meetings of the QMSum `train` qrels (the splits share no meeting): each window
    of `window_turns` speaker turns is a passage, and its longest turn the query, cut out of the passage 90% of the
    time (ORQA's inverse cloze task). No teacher is needed: they teach the student to find the text a snippet
    comes from, the lexical half of retrieval that word/definition pairs barely exercise."""
    meetings = {doc_id for judged in read_qrels(train_qrels_path).values() for doc_id in judged}
    rng = random.Random(seed)
    pairs = []
    for doc_id, _, text in read_corpus(corpus_path):
        if doc_id not in meetings:
            continue
        turns = [turn for turn in text.split("\n") if turn.strip()]
        for start in range(0, len(turns) - window_turns + 1, window_turns):
            window = turns[start : start + window_turns]
            query = max(range(len(window)), key=lambda i: len(window[i]))
            if len(window[query].split()) < 8:
                continue
            kept = window if rng.random() < keep_query else window[:query] + window[query + 1 :]
            pairs.append(Pair(window[query].split(":", 1)[-1].strip(), "\n".join(kept)))
    rng.shuffle(pairs)
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
            chunk = missing[start : start + save_every]
            vectors = self.teacher.encode(
                chunk,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=len(chunk) > batch_size,
            )
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


def teacher_token_vectors(tokenizer, cache, size):
    """(ids, vectors): the teacher's embedding of each token's text, for the ids below `size` that the tokenizer
    produces and that decode to visible text (vocabulary padding and blank tokens have none)."""
    texts = {i: tokenizer.decode([i]).strip() for i in range(min(len(tokenizer), size))}
    texts = {i: text for i, text in texts.items() if text}
    cache.ensure(list(texts.values()))
    return torch.tensor(list(texts)), cache.get(list(texts.values()))


def init_embeddings_from_teacher(model, tokenizer, cache, width=None):
    """Start the student's token embeddings from the teacher's embedding of each token's text, reduced to the
    student's width by PCA and scaled to the initial spread: every token starts with the teacher's lexical
    semantics, so training spends its steps on composing tokens, not on learning 50k words from scratch.
    Ids with no teacher vector (`teacher_token_vectors`) keep their random rows. `width` (default: all) is how
    many leading columns get the teacher's PCA. Returns the number of rows set."""
    embeddings = model.get_input_embeddings().weight
    ids, teacher = teacher_token_vectors(tokenizer, cache, embeddings.shape[0])
    teacher = teacher - teacher.mean(dim=0)
    _, _, directions = torch.linalg.svd(teacher, full_matrices=False)
    width = width or embeddings.shape[1]
    reduced = teacher @ directions[:width].T
    with torch.no_grad():
        reduced *= embeddings.std() / reduced.std()
        embeddings[ids, :width] = reduced.to(embeddings.dtype)
    return len(ids)


class SharedRowMap(torch.nn.Module):
    """Token rows = the rows as they were + (the teacher's embedding of the token's text) @ `change`, one map
    shared by every token (a parametrization of the embedding weight). Training the map instead of each row
    moves every row, tokens absent from the training text included, by the same rule: free rows drifted
    (free rows at lr 3e-2, by eval/studies/row_drift.py: 83% of a row's norm, and the IDF coordinate of the 36k seen
    tokens from 0.74 to 1.42 on average while unseen ones stayed at 1.0), so that seen and unseen tokens no longer lived
    in one space. Starts as the identity (`change` = 0). Only the ids with a teacher vector move (not blank tokens
    or vocabulary padding); `skip` ids (the EOS) keep their rows."""

    def __init__(self, ids, teacher, width, skip=()):
        super().__init__()
        keep = ~torch.isin(ids, torch.tensor(list(skip), dtype=ids.dtype))
        self.register_buffer("ids", ids[keep])
        self.register_buffer("teacher", (teacher - teacher.mean(dim=0))[keep])
        self.change = torch.nn.Parameter(torch.zeros(teacher.shape[1], width))

    def forward(self, rows):
        moved = rows[self.ids].float() + self.teacher @ self.change
        return rows.index_copy(0, self.ids, moved.to(rows.dtype))


def token_idf(tokenizer, texts, size):
    """Inverse document frequency of every token id (`size` of them) over `texts` (training text only):
    log(n / (1 + df)), unseen ids at the largest value."""
    df = np.zeros(size, np.int64)
    for start in range(0, len(texts), 2048):
        for ids in tokenizer(texts[start : start + 2048], add_special_tokens=False)["input_ids"]:
            df[np.unique(np.asarray(ids, dtype=np.int64))] += 1
    idf = torch.from_numpy(np.log(len(texts) / (1.0 + df))).float().clamp(min=0)
    if not idf.max() > 0:
        raise ValueError(f"No token is rarer than another in {len(texts)} texts: IDF needs more training text.")
    return idf


@torch.no_grad()
def init_bag_of_embeddings(model, tokenizer, cache, idf, gate=4.0, scale=0.02, idf_sharpness=12.0):
    """Set a Mamba-1 student so that, before any training, its EOS state is (to cosine > 0.99) the IDF-weighted sum of
    the teacher's token embeddings of the text: a construction within the architecture, so that training starts from a
    lexical retriever instead of from noise (from noise, 5,000 steps left the EOS state far worse than a plain
    average of its own token embeddings).

    Token rows: the teacher's embedding of the token's text (PCA to width - 1, unit RMS) plus one coordinate holding
    idf / max(idf). Layer 0 sums: x = silu(conv(scale * token)) ~ scale/2 * token (identity conv, small scale keeps
    silu linear), one constant channel (conv bias) feeds B = C = e_0 so the scan adds dt * x into one state, A ~ 0
    (exp(-15): a millionth of a decay per token), dt = softplus(idf_sharpness * idf coordinate) weights each token
    by its IDF (from ln 2 at IDF 0 to softplus(12) at the largest), the gate z is a
    constant at the EOS position (its rows point along the EOS row), and out_proj copies the summed channels back to
    the residual. The later layers start as the identity (out_proj = 0), free to learn. Returns the token rows set."""
    config = model.config
    width, inner, states = config.hidden_size, config.intermediate_size, config.state_size
    if config.backbone != "mamba" or inner < width + 1 or not config.use_conv_bias:
        raise ValueError(
            "The bag-of-embeddings start needs a Mamba-1 student with intermediate_size > hidden_size and a conv bias."
        )
    if tokenizer.eos_token_id is None:
        raise ValueError("The bag-of-embeddings start needs a tokenizer with an EOS token (the pooled position).")
    embeddings = model.get_input_embeddings().weight
    rows = init_embeddings_from_teacher(model, tokenizer, cache, width=width - 1)
    semantic = embeddings[:, : width - 1]
    semantic /= semantic.pow(2).mean(dim=1, keepdim=True).sqrt().clamp(min=1e-6)
    embeddings[:, width - 1] = (idf[: embeddings.shape[0]] / idf.max()).to(embeddings.dtype)
    eos = tokenizer.eos_token_id
    embeddings[eos, width - 1] = 0.0  # the EOS weighs as a zero-IDF token: softplus(0) = ln 2
    eos_direction = F.normalize(embeddings[eos].float(), dim=0)
    embeddings[eos] *= 1e-2  # its residual must not swamp a short text's sum (the gate reads its direction only)
    constant, idf_channel = width, width - 1
    for index, layer in enumerate(model.backbone.layers):
        mixer = layer.mixer
        layer.norm.weight.fill_(1.0)
        if index:
            mixer.out_proj.weight.zero_()  # identity at the start
            continue
        mixer.in_proj.weight.zero_()
        mixer.in_proj.weight[:width, :width] = scale * torch.eye(width)
        mixer.in_proj.weight[inner:] = gate / math.sqrt(width) * eos_direction  # z = gate at the EOS position
        mixer.conv1d.weight.zero_()
        mixer.conv1d.bias.zero_()
        mixer.conv1d.weight[:width, 0, -1] = 1.0  # the current token only
        mixer.conv1d.bias[constant] = 1.0  # x[constant] = silu(1) everywhere
        silu_one = F.silu(torch.tensor(1.0)).item()
        mixer.x_proj.weight.zero_()
        rank = mixer.time_step_rank
        mixer.x_proj.weight[0, idf_channel] = 2.0 / scale  # dt input = idf coordinate (x ~ scale/2 * token)
        mixer.x_proj.weight[rank, constant] = 1.0 / silu_one  # B = e_0
        mixer.x_proj.weight[rank + states, constant] = 1.0 / silu_one  # C = e_0
        mixer.dt_proj.weight.zero_()
        mixer.dt_proj.weight[:, 0] = idf_sharpness
        mixer.dt_proj.bias.zero_()
        mixer.A_log.fill_(-15.0)  # A = -3e-7: dt * A is a millionth or less per token
        mixer.D.zero_()
        mixer.out_proj.weight.zero_()
        mixer.out_proj.weight[: width - 1, : width - 1] = torch.eye(width - 1)  # the idf and constant sums stay out
    model.backbone.norm_f.weight.fill_(1.0)
    return rows


def distillation_loss(
    query_embeddings, passage_embeddings, teacher_queries, teacher_passages, weight, temperature=TEMPERATURE
):
    """InfoNCE over in-batch passages + weight * MSE of the cosine-similarity matrices over all 2B texts (the
    second term only when teacher embeddings are given)."""
    student = F.normalize(torch.cat([query_embeddings, passage_embeddings]), dim=-1)
    batch = query_embeddings.shape[0]
    scores = student[:batch] @ student[batch:].T / temperature
    contrastive = F.cross_entropy(scores, torch.arange(batch, device=scores.device))
    if teacher_queries is None:
        return contrastive, contrastive.detach(), torch.zeros(())
    teacher = F.normalize(torch.cat([teacher_queries, teacher_passages]), dim=-1)
    similarity = F.mse_loss(student @ student.T, teacher @ teacher.T)
    return contrastive + weight * similarity, contrastive.detach(), similarity.detach()


def encode_batch(model, tokenizer, texts, max_length, rows_only=False):
    """(embeddings, number of token positions computed, padding included); `rows_only` sums the bag start's
    tokens without the scan (bag_forward: the same embeddings, faster)."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    if rows_only:
        return bag_embedding(model, batch["input_ids"], batch["attention_mask"]), batch["input_ids"].numel()
    return model(**batch).sentence_embedding, batch["input_ids"].numel()


def distil(
    model,
    tokenizer,
    sources,
    cache,
    *,
    steps,
    batch_size=32,
    learning_rate=1e-3,
    weight=10.0,
    query_max_length=32,
    passage_max_length=256,
    seed=0,
    log_every=50,
    prompts=None,
    source_shares=None,
    temperature=TEMPERATURE,
    dev_pairs=(),
    dev_every=500,
    without_teacher=(),
    rows_only=False,
    row_map=False,
):
    """Train `model` (a MambaForRetrieval) in place; returns the log [{step, loss, contrastive, similarity, ...}].

    `sources` maps a name to its pairs. Each batch comes from one source, so that short glosses are never padded
    to the length of a meeting span (which made most steps cost 10x more). A source is drawn with the probability
    given in `source_shares` (name -> share), by default in proportion to its size. Sources named in
    `without_teacher` train on InfoNCE alone (no teacher embeddings). With `dev_pairs` (held out
    from training), the log records their recall@1 every `dev_every` steps.

    `rows_only` trains the token rows alone (the EOS row stays: the gate reads it) of a bag-started student,
    through bag_forward's exact sum: the model keeps the construction, and its steps cost far less. `row_map`
    (with `rows_only`) trains one `SharedRowMap` instead of each row; the rows it gives are written back."""
    prompts = prompts or {"query": "", "document": ""}
    names = [name for name in sources if sources[name]]
    if not names:
        raise ValueError("No training pairs: every source is empty.")
    shares = [(source_shares or {}).get(name, len(sources[name])) for name in names]
    distilled = [name for name in names if name not in without_teacher]
    cache.ensure(
        [p.query for name in distilled for p in sources[name]]
        + [p.passage for name in distilled for p in sources[name]]
    )
    rng = random.Random(seed)
    _check_rows_only(model, tokenizer, rows_only, row_map)  # before the row map's teacher pass over 50k tokens
    row_map = (
        SharedRowMap(
            *teacher_token_vectors(tokenizer, cache, model.get_input_embeddings().weight.shape[0]),
            width=model.config.hidden_size,
            skip=[tokenizer.eos_token_id],
        )
        if row_map
        else None
    )
    with _trainable(model, tokenizer, rows_only, row_map) as parameters:
        # no weight decay on rows-only: it would shrink the EOS row, the residual that every text's sum is added to
        optimizer = torch.optim.AdamW(
            parameters, lr=learning_rate, betas=(0.9, 0.95), weight_decay=0.0 if rows_only else 0.01
        )
        warmup = max(1, steps // 20)  # 5% linear warm-up, then cosine decay to zero
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda s: min(
                (s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, (s + 1 - warmup) / max(1, steps - warmup))))
            ),
        )
        model.train()
        log, started, tokens = [], time.time(), 0
        for step in range(1, steps + 1):
            name = rng.choices(names, weights=shares)[0]
            pairs = sources[name]
            batch = distinct_passages(rng.sample(pairs, min(len(pairs), 2 * batch_size)), batch_size)
            with parametrize.cached():  # a row map's rows once per step, not once per encode
                queries, query_tokens = encode_batch(
                    model, tokenizer, [prompts["query"] + p.query for p in batch], query_max_length, rows_only
                )
                passages, passage_tokens = encode_batch(
                    model, tokenizer, [prompts["document"] + p.passage for p in batch], passage_max_length, rows_only
                )
            tokens += query_tokens + passage_tokens
            teacher_queries, teacher_passages = (
                (None, None)
                if name in without_teacher
                else (cache.get([p.query for p in batch]), cache.get([p.passage for p in batch]))
            )
            loss, contrastive, similarity = distillation_loss(
                queries, passages, teacher_queries, teacher_passages, weight, temperature
            )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            schedule.step()
            if step % log_every == 0 or step in (1, steps):
                seconds = time.time() - started
                log.append(
                    {
                        "step": step,
                        "loss": loss.item(),
                        "contrastive": contrastive.item(),
                        "similarity": similarity.item(),
                        "seconds": round(seconds, 1),
                        "tokens_per_second": round(tokens / seconds),
                    }
                )
                if dev_pairs and (step % dev_every == 0 or step == steps):
                    recall = dev_recall_at_1(model, tokenizer, dev_pairs, prompts, rows_only)
                    log[-1]["dev_recall_at_1"] = round(recall, 4)
                print(json.dumps(log[-1]), file=sys.stderr, flush=True)
    model.eval()
    return log


def _check_rows_only(model, tokenizer, rows_only, row_map):
    if row_map and not rows_only:
        raise ValueError("A shared row map trains the rows of a rows-only student: it needs rows_only.")
    if rows_only:
        check_bag_structure(model)
        if tokenizer.eos_token_id is None:
            raise ValueError("Rows-only training needs a tokenizer with an EOS token (the row it keeps fixed).")


@contextmanager
def _trainable(model, tokenizer, rows_only, row_map=None):
    """The parameters to train (checked by `_check_rows_only`); with `rows_only`, the token rows alone, the EOS
    row kept by a gradient hook, or with `row_map` that map's parameters, the rows it gives written into the
    embedding afterwards. The hook and every parameter's requires_grad are restored afterwards, whatever happens."""
    if not rows_only:
        yield list(model.parameters())
        return
    flags = [parameter.requires_grad for parameter in model.parameters()]
    model.requires_grad_(False)
    embedding = model.get_input_embeddings()
    try:
        if row_map is not None:
            parametrize.register_parametrization(embedding, "weight", row_map.to(embedding.weight.device))
            try:
                yield list(row_map.parameters())
            finally:
                parametrize.remove_parametrizations(embedding, "weight", leave_parametrized=True)
        else:
            rows = embedding.weight.requires_grad_(True)
            eos = torch.tensor([tokenizer.eos_token_id])
            hook = rows.register_hook(lambda grad: grad.index_fill(0, eos, 0.0))
            try:
                yield [rows]
            finally:
                hook.remove()
    finally:
        for parameter, flag in zip(model.parameters(), flags):
            parameter.requires_grad_(flag)


@torch.no_grad()
def dev_recall_at_1(model, tokenizer, pairs, prompts=None, rows_only=False, batch_size=64):
    """Share of held-out queries whose own passage ranks first among all the held-out passages."""
    prompts = prompts or {"query": "", "document": ""}
    was_training = model.training
    model.eval()
    pairs = distinct_passages(pairs, len(pairs))

    def embed(texts, max_length):
        return torch.cat(
            [
                encode_batch(model, tokenizer, texts[i : i + batch_size], max_length, rows_only)[0]
                for i in range(0, len(texts), batch_size)
            ]
        )

    queries = embed([prompts["query"] + p.query for p in pairs], 32)
    passages = embed([prompts["document"] + p.passage for p in pairs], 256)
    model.train(was_training)
    return (queries @ passages.T).argmax(dim=1).eq(torch.arange(len(pairs))).float().mean().item()


def distinct_passages(candidates, size):
    """In-batch negatives must be negatives: at most one pair per passage (WordNet examples share definitions)."""
    seen, batch = set(), []
    for pair in candidates:
        if pair.passage not in seen:
            seen.add(pair.passage)
            batch.append(pair)
        if len(batch) == size:
            break
    return batch
