"""`mamba-retrieval train START OUT --data DATA`: the Mamba Retriever recipe (InfoNCE, temperature 0.01)."""

import json
import tempfile
from dataclasses import fields
from pathlib import Path

from mamba_retrieval.modeling.pretrained import locate_model
from mamba_retrieval.modeling.search.documents import read_source
from mamba_retrieval.modeling.sizes import NAMED_SIZES
from mamba_retrieval.modeling.training.settings import TrainingSettings


def register(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a retriever (InfoNCE, temperature 0.01, BM25 hard negatives)",
        description="Fine-tune START (a Hub folder, a shipped model such as mamba-retrieval-tiny, a named size or a "
        "transformers *-hf folder) on (query, passage) pairs and write the trained Hub folder to OUT. "
        "Multi-GPU: `torchrun --nproc_per_node N -m mamba_retrieval.modeling.cli train ...` (or "
        "`accelerate launch`).",
    )
    parser.add_argument(
        "start", help="Hub folder, shipped model name, named size (tiny, 130m, ...) or transformers *-hf folder"
    )
    parser.add_argument("out", help="output folder (must not exist or be empty, unless --force)")
    parser.add_argument("--data", required=True, help="JSONL of {query, positive, negatives?} or a BEIR folder")
    parser.add_argument("--split", default="train", help="qrels split of a BEIR folder")
    parser.add_argument("--corpus", help="JSONL/BEIR corpus to mine negatives from (default: the data's passages)")
    defaults = TrainingSettings()
    for setting in fields(TrainingSettings):
        if setting.name == "data":
            continue
        flag = "--" + setting.name.replace("_", "-")
        default = getattr(defaults, setting.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=setting.metadata["help"])
        else:
            parser.add_argument(flag, type=type(default), default=default, help=setting.metadata["help"])
    parser.add_argument("--query-prompt", help="text prepended to queries (default: the start model's)")
    parser.add_argument("--document-prompt", help="text prepended to passages (default: the start model's)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run)


def run(args):
    from mamba_retrieval.conversion.base_models import init_retriever, is_retriever_folder
    from mamba_retrieval.modeling.hub_folder import check_output_dir
    from mamba_retrieval.modeling.training.retriever import read_examples, train_retriever

    start = locate_model(args.start, "START", also=NAMED_SIZES)  # a typo is named before the data is read
    settings = TrainingSettings(**{f.name: getattr(args, f.name) for f in fields(TrainingSettings) if f.name != "data"})
    settings.data = [args.data] + ([args.corpus] if args.corpus else [])
    examples = read_examples(args.data, args.split)
    corpus = [d.text for d in read_source(args.corpus).documents] if args.corpus else [e.positive for e in examples]
    prompts = {k: v for k, v in (("query", args.query_prompt), ("document", args.document_prompt)) if v is not None}
    check_output_dir(args.out, args.force, sources=[start])  # before any slow loading
    with tempfile.TemporaryDirectory(prefix="mamba-retrieval-start-") as work_dir:
        if not is_retriever_folder(start):
            start = init_retriever(start, Path(work_dir) / "start", max_seq_length=settings.passage_max_length)
        log = train_retriever(
            start, examples, args.out, settings, prompts=prompts, force=args.force, corpus=corpus, start_name=args.start
        )
    losses = [entry["loss"] for entry in log if "loss" in entry]
    print(json.dumps({"out": args.out, "first_loss": losses[:1], "last_loss": losses[-1:]}))
