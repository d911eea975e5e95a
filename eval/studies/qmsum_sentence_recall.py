"""Long-document sentence retrieval on QMSum: recall of the gold-span sentence units in the top k.

Each QMSum query comes with the transcript span that answers it (../shared/data/distill-corpus/
qmsum_query_span_pairs.jsonl.gz); the transcript is the whole meeting (../shared/data/qmsum-longdoc). Every meeting is
split into SPScanner's sentence units; a unit is gold when at least half of its (non-whitespace) characters lie in
the query's span. Each system scores every unit of the meeting against the query; recall@k is the share of gold
units among the top k (k = 10, and the fractions 0.05 and 0.1, meaning max(10, ceil(n * k)) as in SPScanner).

Systems: SPScanner (one pass of question + transcript, windows as in `SentenceScanner`), BM25 over the units
(bm25s, English stop words), a MambaForRetrieval bi-encoder (cosine of query and unit embeddings), and a random
ranking (the chance level). Without --scanner / --retriever the Mamba rows use randomly initialised tiny models:
they show the harness runs, not what trained models reach.

    python eval/studies/qmsum_sentence_recall.py --output eval/results/qmsum_sentence_recall.json
"""

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mamba_retrieval.conversion.base_models import random_model
from mamba_retrieval.eval.bm25_units import BM25Units
from mamba_retrieval.modeling.data_files import data_dir, read_corpus, read_jsonl
from mamba_retrieval.modeling.scanner.segmentation import segment_document
from mamba_retrieval.modeling.scanner.sentence_scanner import (
    SentenceScanner,
    build_scanner_tokenizer,
    random_scanner,
    top_k_indices,
)
from mamba_retrieval.modeling.tokenizer import build_tokenizer

DEFAULT_DATA = data_dir()
TOP_KS = (10, 0.05, 0.1)


def load_pairs(data_dir, split):
    pairs_path = Path(data_dir) / "distill-corpus" / "qmsum_query_span_pairs.jsonl.gz"
    corpus_path = Path(data_dir) / "qmsum-longdoc" / "corpus.jsonl"
    for path in (pairs_path, corpus_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; pass --data-dir (the shared/data folder).")
    pairs = [row for row in read_jsonl(pairs_path) if row["split"] == split]
    corpus = {doc_id: text for doc_id, _, text in read_corpus(corpus_path)}
    missing = sorted({p["meeting_id"] for p in pairs} - set(corpus))
    if missing:
        raise ValueError(f"Meetings {missing} of the pairs are not in {corpus_path}.")
    return pairs, corpus


def gold_mask(transcript, span):
    """Boolean mask over the transcript's characters covered by the span's lines (found in order)."""
    mask = np.zeros(len(transcript), dtype=bool)
    cursor = 0
    for line in span.split("\n"):
        line = line.strip()
        if not line:
            continue
        at = transcript.find(line, cursor)
        if at < 0:
            at = transcript.find(line)
        if at < 0:
            raise ValueError(f"A line of the span is not in the transcript: {line[:80]!r}")
        mask[at : at + len(line)] = True
        cursor = at + len(line)
    return mask


def unit_character_ranges(transcript, units):
    """Each unit's characters in the transcript (index arrays). Units keep the transcript's non-whitespace text in
    order, except where a dropped piece (1000+ characters) sat between two merged pieces; the alignment below jumps
    such gaps."""
    positions = np.array([i for i, ch in enumerate(transcript) if not ch.isspace()])
    compact = "".join(transcript[i] for i in positions)
    ranges, cursor = [], 0
    for unit in units:
        text, found, i = re.sub(r"\s+", "", unit), [], 0
        while i < len(text):
            at = compact.find(text[i : i + 20], cursor)
            if at < 0:
                raise ValueError(f"Unit not found in the transcript: {unit[:80]!r}")
            length = 0
            while i + length < len(text) and at + length < len(compact) and compact[at + length] == text[i + length]:
                length += 1
            found.append(positions[at : at + length])
            i, cursor = i + length, at + length
        ranges.append(np.concatenate(found) if found else positions[:0])
    return ranges


def recall_at(scores, gold, top_k):
    chosen = set(top_k_indices(list(scores), top_k))
    return len(chosen & gold) / len(gold)


class BiEncoderUnits:
    def __init__(self, model, tokenizer, units, batch_size=64):
        self.model, self.tokenizer = model, tokenizer
        self.unit_embeddings = self.embed([u.strip() for u in units], batch_size)

    @torch.inference_mode()
    def embed(self, texts, batch_size=64):
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                texts[start : start + batch_size], padding=True, truncation=True, max_length=512, return_tensors="pt"
            )
            chunks.append(self.model(**batch).sentence_embedding)
        return torch.cat(chunks)

    def score(self, query):
        return (self.unit_embeddings @ self.embed([query])[0]).tolist()


def load_retriever(path):
    from transformers import AutoModel, AutoTokenizer

    if path is None:
        return (
            random_model("mamba2-tiny", seed=0),
            build_tokenizer(),
            "MambaForRetrieval bi-encoder (random mamba2-tiny)",
        )
    model = AutoModel.from_pretrained(path, trust_remote_code=True).eval()
    return model, AutoTokenizer.from_pretrained(path, trust_remote_code=True), f"MambaForRetrieval ({path})"


def load_scanner(path):
    if path is None:
        return SentenceScanner(random_scanner("mamba2-tiny", seed=0)), "SPScanner (random mamba2-tiny)"
    return SentenceScanner.from_pretrained(path), f"SPScanner ({path})"


def evaluate(pairs, corpus, scanner, retriever, seed=0, log=None):
    log = log or sys.stderr  # looked up per call: a stream bound at import time may be closed
    tokenizer = build_scanner_tokenizer()
    scanner_obj, scanner_name = scanner
    retriever_model, retriever_tokenizer, retriever_name = retriever
    systems = [scanner_name, BM25Units.name, retriever_name, "random ranking"]
    recalls = {name: {str(k): [] for k in TOP_KS} for name in systems}
    seconds = {name: 0.0 for name in systems}
    rng = random.Random(seed)
    by_meeting = {}
    for pair in pairs:
        by_meeting.setdefault(pair["meeting_id"], []).append(pair)
    n_units, n_gold, skipped = [], [], 0
    for number, (meeting, meeting_pairs) in enumerate(sorted(by_meeting.items()), start=1):
        transcript = corpus[meeting]
        config = scanner_obj.model.config
        segmented = segment_document(
            transcript, tokenizer, config.min_unit_tokens, config.max_piece_words, config.max_piece_chars
        )
        units = segmented.units
        ranges = unit_character_ranges(transcript, units)
        started = time.perf_counter()
        bm25 = BM25Units(units)
        seconds[BM25Units.name] += time.perf_counter() - started
        started = time.perf_counter()
        biencoder = BiEncoderUnits(retriever_model, retriever_tokenizer, units)
        seconds[retriever_name] += time.perf_counter() - started
        for pair in meeting_pairs:
            mask = gold_mask(transcript, pair["relevant_span"])
            gold = {i for i, chars in enumerate(ranges) if len(chars) and mask[chars].mean() >= 0.5}
            if not gold:
                skipped += 1
                continue
            n_units.append(len(units))
            n_gold.append(len(gold))
            scored = {}
            started = time.perf_counter()
            scored[scanner_name] = scanner_obj.score(pair["query"], segmented.input_ids, segmented.end_positions)
            seconds[scanner_name] += time.perf_counter() - started
            for name, system in ((BM25Units.name, bm25), (retriever_name, biencoder)):
                started = time.perf_counter()
                scored[name] = system.score(pair["query"])
                seconds[name] += time.perf_counter() - started
            scored["random ranking"] = [rng.random() for _ in units]
            for name, scores in scored.items():
                for k in TOP_KS:
                    recalls[name][str(k)].append(recall_at(scores, gold, k))
        print(
            f"[{number}/{len(by_meeting)}] {meeting}: {len(units)} units, {len(meeting_pairs)} queries",
            file=log,
            flush=True,
        )
    return {
        "queries": len(n_units),
        "skipped_no_gold_unit": skipped,
        "mean_units_per_meeting_query": float(np.mean(n_units)),
        "mean_gold_units": float(np.mean(n_gold)),
        "recall": {name: {k: float(np.mean(v)) for k, v in per_k.items()} for name, per_k in recalls.items()},
        "seconds": seconds,
    }


def markdown_table(result):
    header = "| system | R@10 | R@0.05 | R@0.1 |\n| --- | --- | --- | --- |\n"
    rows = "".join(
        f"| {name} | " + " | ".join(f"{per_k[str(k)]:.3f}" for k in TOP_KS) + " |\n"
        for name, per_k in result["recall"].items()
    )
    return header + rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        default=str(DEFAULT_DATA),
        help="the offline data folder (default: $MAMBA_RETRIEVAL_DATA, else ../shared/data)",
    )
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--limit", type=int, help="only the first N queries (for a quick run)")
    parser.add_argument("--scanner", help="SPScanner Hub folder (default: a random mamba2-tiny scanner)")
    parser.add_argument("--retriever", help="MambaForRetrieval Hub folder (default: a random mamba2-tiny retriever)")
    parser.add_argument("--output", help="write the result as JSON here")
    args = parser.parse_args(argv)
    pairs, corpus = load_pairs(args.data_dir, args.split)
    pairs = pairs[: args.limit] if args.limit else pairs
    torch.set_num_threads(max(1, torch.get_num_threads()))
    result = evaluate(pairs, corpus, load_scanner(args.scanner), load_retriever(args.retriever))
    result.update(
        split=args.split,
        limit=args.limit,
        command="python eval/studies/qmsum_sentence_recall.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    )
    print(markdown_table(result))
    print(
        f"{result['queries']} queries, {result['mean_units_per_meeting_query']:.0f} units and "
        f"{result['mean_gold_units']:.1f} gold units per query on average"
    )
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
