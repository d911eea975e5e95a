"""A trained folder's evaluation scores, recorded in its training.json with the result files they came from."""

import json
from pathlib import Path

from mamba_retrieval.eval.leaderboard_bundle import find_model_results
from mamba_retrieval.eval.model_specs import resolve_model
from mamba_retrieval.eval.result_files import sourced_scores, task_result_files
from mamba_retrieval.modeling.data_files import write_text_atomic


def record_metrics(folder, results_dir, metric="ndcg_at_10"):
    """Write `metric` of every task evaluated for `folder` (its mteb result files in `results_dir`, an eval
    --output folder) into folder/training.json under "metrics", with the files the numbers came from. The result
    files are found by the folder's weights hash, so they belong to these very weights. Returns the metrics."""
    folder = Path(folder)
    record_file = folder / "training.json"
    if not record_file.is_file():
        raise FileNotFoundError(f"{record_file} does not exist; metrics are recorded beside a training record.")
    results = find_model_results(results_dir, resolve_model(str(folder)))
    scores = [
        score
        for path in task_result_files(results)
        for score in sourced_scores(path, [metric])
        if score.split == "test"
    ]  # the zero-shot scores; a dev run in the same file is not a final metric
    record = json.loads(record_file.read_text())
    record["metrics"] = {
        metric: {score.task: round(score.value, 5) for score in scores},
        "split": sorted({score.split for score in scores}),
        "result_files": sorted({_relative(score.file) for score in scores}),
    }
    write_text_atomic(record_file, json.dumps(record, indent=2) + "\n")
    return record["metrics"]


def _relative(path):
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
