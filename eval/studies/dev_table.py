"""The dev table that chooses among distilled students: `distil_dev`'s scores beside each model's QMSum-longdoc
`dev` nDCG@10, with the mean of the four training-side scores (the first stop's rule) and of all five (the rule
since: the out-of-domain docstring MRR added).

    python eval/studies/dev_table.py eval/results/distil-candidates-dev

reads DIR/distil_dev.jsonl (`python eval/studies/distil_dev.py ... >> DIR/distil_dev.jsonl`; a model's
last line counts) and the result files under DIR/results (`mamba-retrieval eval MODEL --beir-dir
../shared/data/qmsum-longdoc --split dev --max-length 65536 --output DIR`), and prints a Markdown table.
"""

import argparse
import json
from pathlib import Path

from mamba_retrieval.eval.model_specs import MINILM_NAMES
from mamba_retrieval.eval.result_files import sourced_scores

TRAINING_SIDE = ("wordnet_dev_r1", "qmsum_span_val_mrr", "gloss_document_dev_mrr", "qmsum_longdoc_dev_ndcg10")
COLUMNS = TRAINING_SIDE + ("docstring_dev_mrr",)
FROM_DISTIL_DEV = tuple(key for key in COLUMNS if key != "qmsum_longdoc_dev_ndcg10")


def qmsum_dev_ndcg(results, model, max_length):
    """The model's QMSum-longdoc dev nDCG@10: its run at `max_length` tokens; the teacher's run at its own 256
    (evaluated without --max-length: 512 positions at most)."""
    name, teacher = Path(model).name, model in MINILM_NAMES
    pattern = (
        f"*__{name}/*/qmsum-longdoc.json"
        if teacher
        else (f"*__{name}/*/experiments/max_length_{max_length}/qmsum-longdoc.json")
    )
    files = sorted(results.glob(pattern))
    if len(files) != 1:
        length = "" if teacher else f" --max-length {max_length}"
        raise ValueError(
            f"Expected one QMSum-longdoc dev result for {model} under {results}, found {len(files)}: run "
            f"`mamba-retrieval eval {model} --beir-dir ../shared/data/qmsum-longdoc --split dev{length} "
            f"--output {results.parent}` (once per weights)."
        )
    [score] = [score for score in sourced_scores(files[0], ["ndcg_at_10"]) if score.split == "dev"]
    return score.value


def dev_rows(folder, max_length=65536):
    """[{model, the five scores, mean_of_4, mean_of_5}] in the order the models first appear in distil_dev.jsonl.
    The teacher's row (all-MiniLM-L6-v2) is a reference: `markdown` marks the best of the others."""
    folder = Path(folder)
    lines = [json.loads(line) for line in (folder / "distil_dev.jsonl").read_text().splitlines() if line.strip()]
    scores = {}
    for line in lines:  # a model scored again: its last line counts
        scores[line["model"]] = line
    rows = []
    for model, line in scores.items():
        missing = [key for key in FROM_DISTIL_DEV if key not in line]
        if missing:
            raise ValueError(
                f"{model}'s line in distil_dev.jsonl lacks {', '.join(missing)}: score it again with "
                "`python eval/studies/distil_dev.py`."
            )
        row = {
            "model": model,
            **{key: line[key] for key in FROM_DISTIL_DEV},
            "qmsum_longdoc_dev_ndcg10": qmsum_dev_ndcg(folder / "results", model, max_length),
        }
        row["mean_of_4"] = round(sum(row[key] for key in TRAINING_SIDE) / 4, 4)
        row["mean_of_5"] = round(sum(row[key] for key in COLUMNS) / 5, 4)
        rows.append(row)
    return rows


def markdown(rows):
    header = [
        "model",
        "WordNet R@1",
        "QMSum span MRR",
        "gloss doc MRR",
        "QMSum-longdoc dev",
        "docstring MRR",
        "mean of 4",
        "mean of 5",
    ]
    best = max((row["mean_of_5"] for row in rows if row["model"] not in MINILM_NAMES), default=None)
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        cells = [f"{row[key]:.3f}" for key in COLUMNS] + [f"{row['mean_of_4']:.4f}", f"{row['mean_of_5']:.4f}"]
        if row["mean_of_5"] == best and row["model"] not in MINILM_NAMES:
            cells[-1] = f"**{cells[-1]}**"
        name = row["model"] + (" (the teacher: a reference, not a candidate)" if row["model"] in MINILM_NAMES else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python eval/studies/dev_table.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the folder with distil_dev.jsonl and results/")
    parser.add_argument("--max-length", type=int, default=65536, help="the QMSum-longdoc dev runs' token limit")
    args = parser.parse_args(argv)
    print(markdown(dev_rows(args.folder, args.max_length)))


if __name__ == "__main__":
    main()
