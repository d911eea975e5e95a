"""Dev scores for choosing among distilled students, from training-side data only (never the test sets).

- WordNet: R@1 of the pairs that `mamba-retrieval distil` keeps out of training (the first `--dev-pairs` after the
  seeded shuffle of the first `--wordnet-limit` pairs, as for the shipped model: 100,000, 1,000, seed 0), each query
  against all their definitions. The pairs are held out, not their definitions: a synset's other words and
  examples may be trained on.
- QMSum spans: MRR of the `val` query -> relevant-span pairs of distill-corpus, each query against every `val` span.
- Gloss documents: MRR of the example sentence -> document (8 WordNet entries) pairs that distil keeps out of
  training (`GLOSS_DOCUMENT_DEV`, seed 0), each against all their documents: a short query that shares a term with
  a ~150-token text, the shape of a SciFact claim and its abstract. The entries may be trained on as word/example
  -> definition pairs; the documents are not.
- Python docstrings (out of domain: no training text is like them): MRR of each summary line -> the rest of its
  docstring, for the public functions, classes and methods of the standard library with a prose summary of 4+
  words and a body of 20+ words, each against all bodies. They come from the running Python: which modules import
  depends on its version and on the platform's optional libraries, so the output gives both the version and the
  number of pairs (685 on the Linux CPython 3.11.7 of these machines).

    python eval/studies/distil_dev.py FOLDER [FOLDER ...]

prints one JSON line per model. QMSum-longdoc `dev` (whole meetings) is `mamba-retrieval eval FOLDER --beir-dir
../shared/data/qmsum-longdoc --split dev --max-length N`.
"""

import argparse
import json
import platform
import sys
import warnings
from pathlib import Path

import numpy as np

from mamba_retrieval.eval.model_specs import MINILM_NAMES, minilm_path
from mamba_retrieval.modeling import data_files
from mamba_retrieval.modeling.data_files import read_jsonl
from mamba_retrieval.modeling.pretrained import resolve_shipped
from mamba_retrieval.modeling.training.distil_recipe import held_out_splits
from mamba_retrieval.modeling.training.distillation import Pair, distinct_passages

NOT_IMPORTED = {
    "antigravity",
    "this",
    "idlelib",
    "tkinter",
    "turtle",
    "turtledemo",
    "test",
    "lib2to3",
    "ensurepip",
    "venv",
    "pydoc_data",
}  # side effects on import (a browser, printing), GUI or test code


def docstring_pairs():
    """(summary line, rest of the docstring) pairs of the standard library's public API, in a fixed order."""
    with warnings.catch_warnings():  # deprecated modules (cgi, typing.io...) warn on import and on reading
        warnings.simplefilter("ignore")
        return [Pair(summary, body) for summary, body in _stdlib_docstrings().items()]


def _stdlib_docstrings():
    import importlib
    import inspect

    pairs = {}
    for name in sorted(sys.stdlib_module_names - NOT_IMPORTED):
        if name.startswith("_"):
            continue
        try:
            module = importlib.import_module(name)
        except Exception:  # a platform's own module (winreg, msvcrt) or one that needs a missing library
            continue
        for attribute, value in sorted(vars(module).items()):
            if attribute.startswith("_") or getattr(value, "__module__", None) != name:
                continue
            members = [value] + (
                [member for key, member in sorted(vars(value).items()) if not key.startswith("_") and callable(member)]
                if inspect.isclass(value)
                else []
            )
            for member in members:
                summary, _, body = (inspect.getdoc(member) or "").partition("\n\n")
                summary, body = " ".join(summary.split()), " ".join(body.split())
                if len(summary.split()) >= 4 and "(" not in summary and len(body.split()) >= 20:
                    pairs.setdefault(summary, body)  # the first of a shared summary (inherited docstrings)
    return pairs


def dev_sets(data_dir=None, wordnet_limit=100_000, dev_pairs=1000):
    """(WordNet pairs, QMSum val span rows, gloss-document pairs, docstring pairs), the first three kept out of
    distil's training, the last unlike anything it trains on. `data_dir`: the distill-corpus folder (default: the
    one in $MAMBA_RETRIEVAL_DATA, else ../shared/data)."""
    data_dir = Path(data_dir or data_files.data_dir("distill-corpus"))
    (wordnet, _), (documents, _) = held_out_splits(data_dir / "wordnet30_glosses.jsonl.gz", wordnet_limit, dev_pairs)
    spans = [row for row in read_jsonl(data_dir / "qmsum_query_span_pairs.jsonl.gz") if row["split"] == "val"]
    return (
        distinct_passages(wordnet, len(wordnet)),
        spans,
        documents,
        distinct_passages(docstring_pairs(), sys.maxsize),
    )


def score(model, wordnet, spans, documents, docstrings, batch_size=32):
    def embed(texts):
        return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)

    def mrr(queries, passages, gold):
        similarities = embed(queries) @ embed(passages).T
        own = similarities[np.arange(len(queries)), gold][:, None]
        ranks = (similarities >= own).sum(axis=1) - 1  # ties count against the model
        return round(float(np.mean(1 / (1 + ranks))), 4)

    queries, definitions = embed([p.query for p in wordnet]), embed([p.passage for p in wordnet])
    recall = float(((queries @ definitions.T).argmax(axis=1) == np.arange(len(wordnet))).mean())
    passages = sorted({row["relevant_span"] for row in spans})
    gold = np.array([passages.index(row["relevant_span"]) for row in spans])
    return {
        "wordnet_dev_r1": round(recall, 4),
        "qmsum_span_val_mrr": mrr([row["query"] for row in spans], passages, gold),
        "gloss_document_dev_mrr": mrr(
            [p.query for p in documents], [p.passage for p in documents], np.arange(len(documents))
        ),
        "docstring_dev_mrr": mrr(
            [p.query for p in docstrings], [p.passage for p in docstrings], np.arange(len(docstrings))
        ),
    }


def use_max_length(model, max_length):
    """Give a sentence-transformers `model` `max_length` tokens per text, unless it has learned positions (the
    teacher: more than its 512 positions fails, and it was trained at its configured 256): such a model keeps its
    own limit, and says so."""
    if getattr(model[0].auto_model.config, "max_position_embeddings", None) is None:
        model.max_seq_length = max_length
    elif model.max_seq_length != max_length:
        print(
            f"distil_dev: the model has learned positions; it keeps its own max_seq_length "
            f"{model.max_seq_length}, not {max_length}.",
            file=sys.stderr,
        )


def main(argv=None):
    from sentence_transformers import SentenceTransformer

    parser = argparse.ArgumentParser(prog="python eval/studies/distil_dev.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "models", nargs="+", help="retriever folders, a shipped model's name, or all-MiniLM-L6-v2 (the teacher)"
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=1024,
        help="tokens per text (QMSum spans are long) for a model without learned positions; one "
        "with them (the teacher) keeps its own max_seq_length",
    )
    arguments = parser.parse_args(argv)
    sets = dev_sets()
    for name in arguments.models:
        path = minilm_path() if name in MINILM_NAMES else resolve_shipped(name)
        model = SentenceTransformer(str(path), trust_remote_code=True, device="cpu")
        use_max_length(model, arguments.max_length)
        print(
            json.dumps(
                {
                    "model": name,
                    "max_length": model.max_seq_length,
                    **score(model, *sets),
                    "python": platform.python_version(),
                    "docstring_pairs": len(sets[3]),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
