"""`mamba-retrieval eval MODEL`: mteb retrieval evaluation, resumable, with a summary table of the result files."""

from pathlib import Path

import mteb

from mamba_retrieval.eval.benchmarks import DEFAULT_OUTPUT
from mamba_retrieval.eval.model_specs import resolve_model
from mamba_retrieval.eval.result_files import results_folder, sourced_scores
from mamba_retrieval.eval.task_selection import select_tasks


def pending_tasks(tasks, meta, cache):
    """The tasks with splits still missing from the result files (mteb's own test: TaskResult.get_missing_evaluations).
    A file computed on other data (another dataset revision) is neither resumed nor silently replaced."""
    pending = []
    for task in tasks:
        path = cache.get_task_result_path(task.metadata.name, meta)
        try:
            existing = cache.load_task_result(task.metadata.name, meta)
        except ValueError as error:  # an empty or cut file (a run killed while mteb wrote it); pydantic's too
            raise ValueError(
                f"{path} is not a readable result file ({type(error).__name__}); delete it and rerun to redo "
                f"{task.metadata.name}."
            ) from None
        if existing is not None and existing.dataset_revision != task.metadata.revision:
            raise FileExistsError(
                f"{path} holds results on dataset revision {existing.dataset_revision}, but "
                f"{task.metadata.name} is now revision {task.metadata.revision} (its data "
                "changed); move that file away or choose another --output."
            )
        if existing is None or existing.get_missing_evaluations(task):
            pending.append(task)
    return pending


def evaluate(
    model,
    *,
    tasks=(),
    benchmark=None,
    beir_dirs=(),
    split=None,
    batch_size=32,
    max_length=None,
    output=DEFAULT_OUTPUT,
    model_name=None,
    revision=None,
    loco_dir=None,
    show_progress_bar=True,
    log=print,
):
    """Run MODEL on the selected tasks; returns (result folder, scores read back from its files)."""
    meta = resolve_model(model, name=model_name, revision=revision, max_length=max_length)
    task_objects = select_tasks(tasks, benchmark, beir_dirs, split, loco_dir)
    cache = mteb.ResultCache(Path(output))
    pending = pending_tasks(task_objects, meta, cache)
    for task in task_objects:
        log(f"{task.metadata.name}: {'to run' if task in pending else 'done already (result file found), skipped'}")
    if pending:
        try:
            mteb.evaluate(
                meta,
                pending,
                cache=cache,
                overwrite_strategy="only-missing",
                raise_error=True,
                encode_kwargs={"batch_size": batch_size, "show_progress_bar": show_progress_bar},
                show_progress_bar=show_progress_bar,
            )
        except ConnectionError as error:  # a Hub task's data, offline or unreachable: the user's setup, not a bug
            raise ValueError(
                f"{error}. The task's data could not be downloaded: run where the Hugging Face Hub is reachable, or "
                "evaluate a local BEIR-layout copy with --beir-dir FOLDER."
            ) from None
    folder = results_folder(output, meta)
    scores = []
    for task in task_objects:
        path = folder / f"{task.metadata.name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"mteb wrote no result file {path} for {task.metadata.name}.")
        scores += sourced_scores(path)
    return folder, scores
