"""Reading the TaskResult files mteb writes (`<output>/results/<org>__<name>/<revision>/[experiments/<e>/]<Task>.json`).

The summary table, the model card and the leaderboard bundle all take their numbers from these files through
`sourced_scores`, so every printed number names the file it came from.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from mteb import ResultCache
from mteb.results import TaskResult

METADATA_FILES = ("model_meta.json",)
METRIC_LABELS = {
    "ndcg_at_10": "nDCG@10",
    "mrr_at_10": "MRR@10",
    "recall_at_1000": "Recall@1000",
    "recall_at_100": "Recall@100",
}


def summary_metrics(task_name):
    """nDCG@10 for every retrieval task; MS MARCO adds MRR@10 and Recall@1000, the paper's in-domain metrics."""
    if "msmarco" in task_name.lower():
        return ["mrr_at_10", "recall_at_1000", "ndcg_at_10"]
    return ["ndcg_at_10"]


@dataclass(frozen=True)
class Score:
    """One number and where it came from."""

    task: str
    split: str
    subset: str
    metric: str
    value: float
    file: Path
    dataset_revision: str
    mteb_version: str


def results_folder(output, meta):
    """The folder mteb's ResultCache writes this model's task files into."""
    return ResultCache(output).get_task_result_path(task_name="_", model_name=meta).parent


def read_task_result(path):
    try:
        return TaskResult.model_validate(json.loads(Path(path).read_text()))
    except (ValueError, KeyError) as error:
        raise ValueError(f"{path} is not an mteb TaskResult file ({error}).") from None


def task_result_files(folder):
    folder = Path(folder)
    return sorted(path for path in folder.glob("*.json") if path.name not in METADATA_FILES)


def sourced_scores(path, metrics=None):
    """The scores of one TaskResult file: `metrics` (default: the summary metrics of its task) for every split and
    subset. A metric the file lacks is an error, never a blank or a guess."""
    result = read_task_result(path)
    scores = []
    for split, subsets in sorted(result.scores.items()):
        for entry in subsets:
            for metric in metrics or summary_metrics(result.task_name):
                if metric not in entry:
                    raise ValueError(f"{path} has no {metric!r} score for split {split!r}; cannot print it.")
                scores.append(
                    Score(
                        result.task_name,
                        split,
                        entry.get("hf_subset", "default"),
                        metric,
                        float(entry[metric]),
                        Path(path),
                        result.dataset_revision,
                        entry.get("mteb_version") or result.mteb_version,
                    )
                )
    return scores


def format_table(scores):
    """A plain-text table: task, split, metric, value (4 decimals, as mteb's leaderboards show two of percent)."""
    rows = [("task", "split", "metric", "value")]
    for score in scores:
        task = score.task if score.subset == "default" else f"{score.task} ({score.subset})"
        rows.append((task, score.split, METRIC_LABELS.get(score.metric, score.metric), f"{score.value:.4f}"))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
