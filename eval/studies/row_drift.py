"""How far training moved a rows-only student's token rows from where they started: the measurement behind
`distil --row-map`.

    python eval/studies/row_drift.py START_FOLDER TRAINED_FOLDER

prints one JSON line: how many rows moved, their mean change relative to their starting norm, and the mean of the
last coordinate (the bag start's IDF coordinate, which sets a token's weight in the sum) of the moved and the
unmoved rows, before and after. Rows are compared at fp16, so an fp16 copy of a model (the shipped folder) counts
only real moves.
"""

import argparse
import json
from pathlib import Path

from safetensors.torch import load_file

ROWS = "backbone.embeddings.weight"


def token_rows(folder):
    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        raise ValueError(f"{folder} has no model.safetensors: give a retriever folder (distil's output).")
    weights = load_file(path)
    if ROWS not in weights:
        raise ValueError(f"{path} has no {ROWS}: not a MambaForRetrieval folder.")
    return weights[ROWS].half().float()


def row_drift(start, trained):
    if start.shape != trained.shape:
        raise ValueError(
            f"The two folders' token rows differ in shape ({tuple(start.shape)} against "
            f"{tuple(trained.shape)}): they are not one student before and after training."
        )
    change = (trained - start).norm(dim=1)
    moved = change > 0
    report = {
        "rows": len(start),
        "moved": int(moved.sum()),
        "relative_change_of_moved": round(float((change[moved] / start[moved].norm(dim=1)).mean()), 4)
        if moved.any()
        else 0.0,
    }
    for name, rows in (("moved", moved), ("unmoved", ~moved)):
        if rows.any():
            report[f"last_coordinate_{name}"] = [
                round(float(start[rows, -1].mean()), 4),
                round(float(trained[rows, -1].mean()), 4),
            ]
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("start", help="the folder as it started (distil --steps 0)")
    parser.add_argument("trained", help="the folder after training")
    args = parser.parse_args(argv)
    print(json.dumps(row_drift(token_rows(args.start), token_rows(args.trained))))


if __name__ == "__main__":
    main()
