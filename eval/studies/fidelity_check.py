"""Fidelity benchmark: the harness must reproduce published SciFact numbers.

    python eval/studies/fidelity_check.py [--beir-dir ../shared/data/beir-scifact] [--output DIR]

Runs all-MiniLM-L6-v2 and BM25 through `mamba-retrieval eval` on SciFact (test), compares nDCG@10 with the
references, prints a table and writes DIR/fidelity_check.json. Exit status 1 if all-MiniLM-L6-v2 misses its
published MTEB score (64.51) by more than 0.0005. Takes about half an hour on a shared 2-core CPU (the MiniLM
encoding of 5,183 abstracts); rerunning with the same --output reuses the finished result files.
"""

import argparse
import json
import sys
from pathlib import Path

from mamba_retrieval.eval.evaluation import evaluate
from mamba_retrieval.modeling.data_files import data_dir

DEFAULT_DATA = data_dir("beir-scifact")
# (MODEL, reference nDCG@10, tolerance or None, source of the reference)
REFERENCES = (
    ("all-MiniLM-L6-v2", 0.6451, 0.0005, "MTEB leaderboard SciFact score of all-MiniLM-L6-v2 (64.51)"),
    ("bm25", 0.6605, None, "BM25 k1 0.9, b 0.4 (Anserini settings), ../shared/data/README.md"),
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beir-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--output", default="fidelity-results")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    rows, ok = [], True
    for model, reference, tolerance, source in REFERENCES:
        folder, scores = evaluate(
            model, beir_dirs=[args.beir_dir], split="test", output=args.output, batch_size=args.batch_size
        )
        [score] = [s for s in scores if s.metric == "ndcg_at_10"]
        passed = None if tolerance is None else abs(score.value - reference) <= tolerance
        ok = ok and passed is not False
        rows.append(
            {
                "model": model,
                "ndcg_at_10": score.value,
                "reference": reference,
                "tolerance": tolerance,
                "difference": round(score.value - reference, 5),
                "passed": passed,
                "reference_source": source,
                "result_file": str(score.file),
            }
        )
    print(f"\n{'model':<18} {'nDCG@10':>8} {'reference':>9} {'difference':>10}  check")
    for row in rows:
        check = {True: "pass", False: "FAIL", None: "(no tolerance: reported)"}[row["passed"]]
        print(
            f"{row['model']:<18} {row['ndcg_at_10']:>8.5f} {row['reference']:>9.4f} {row['difference']:>+10.5f}  "
            f"{check}"
        )
    out = Path(args.output) / "fidelity_check.json"
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
