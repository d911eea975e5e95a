"""Score SPScanner's published test sets and write the per-sentence logits file their RAG pipeline reads.

Input (pickle or JSON): `{benchmark: {datapoint_key: {input_ids, full_text_sentences, question, answer, answer_type,
sentence_indices}}}`, where `input_ids` = question tokens + document tokens and `sentence_indices` are the units' end
tokens in `input_ids` (taken as they are). Output: `{benchmark: {datapoint_key: [mean logit per sentence]}}`, the
`prediction_logits` pickle of their `rag_pipeline/get_ans_prompt.py`, with the same keys as the input (JSON output
turns tuple keys into their `str()`, as that pipeline's `dict_key_to_tuple` expects).

    mamba-retrieval score-testset MODEL test_data.pickle logits.pickle [--window-size N]
"""

import json
import pickle
import sys
from pathlib import Path

from mamba_retrieval.modeling.data_files import atomic_file
from mamba_retrieval.modeling.scanner.sentence_scanner import score_document

FIELDS = ("input_ids", "question", "sentence_indices")


PICKLE_SUFFIXES = (".pickle", ".pkl")
# What a published test set or logits pickle is made of. Unpickling calls whatever a pickle names, so a pickle
# that names anything else (os.system, a class) is refused before anything is called.
PLAIN_DATA = {("builtins", name) for name in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "int")}
PLAIN_DATA |= {("builtins", "float"), ("builtins", "bool"), ("builtins", "complex"), ("collections", "OrderedDict")}
PLAIN_DATA |= {("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype")}  # numpy arrays, as numpy pickles them
PLAIN_DATA |= {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
}


class PlainDataUnpickler(pickle.Unpickler):
    """Reads plain data only: containers, strings, numbers and numpy arrays."""

    def find_class(self, module, name):
        if (module, name) not in PLAIN_DATA:
            raise pickle.UnpicklingError(f"{module}.{name}")
        return super().find_class(module, name)


def read_published(path, what):
    """A file of SPScanner's published pipeline: JSON, or a pickle (`.pickle` / `.pkl`, as published) read as plain
    data only (a pickle that would call anything else is refused, and nothing in it runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found.")
    if path.suffix not in PICKLE_SUFFIXES:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{what} {path} is not JSON ({error}); a pickle must end in .pickle or .pkl.") from None
    with open(path, "rb") as handle:
        try:
            return PlainDataUnpickler(handle).load()
        except pickle.UnpicklingError as error:
            raise ValueError(
                f"Refused {what.lower()} {path}: it is not plain data (it names {error}, which unpickling would call); "
                "only dicts, lists, strings, numbers and numpy arrays are read from a pickle."
            ) from None
        except (EOFError, ValueError, TypeError, AttributeError) as error:
            raise ValueError(f"{what} {path} is not a readable pickle ({type(error).__name__}: {error}).") from None


def as_json_data(value):
    """Plain data as JSON can hold it: tuple keys as their str() (as SPScanner's pipeline reads them back),
    tuples and numpy arrays as lists, numpy numbers as numbers."""
    if isinstance(value, dict):
        return {key if isinstance(key, str) else str(key): as_json_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [as_json_data(item) for item in value]
    if hasattr(value, "tolist"):  # numpy arrays and numpy scalars
        return as_json_data(value.tolist())
    return value


def read_testset(path):
    data = read_published(path, "Test set")
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected {{benchmark: {{datapoint_key: datapoint}}}}.")
    for benchmark, points in data.items():
        for key, point in points.items():
            missing = [field for field in FIELDS if field not in point]
            if missing:
                raise ValueError(f"{path}: datapoint {benchmark}/{key} lacks {missing}.")
    return data


def question_prefix_length(tokenizer, point, suffix="\n"):
    """Length of the question prefix of `input_ids`: the question as stored (the original's evaluate.py), or
    rebuilt the way training data was (`question.strip() + "\\n"`)."""
    input_ids = list(point["input_ids"])
    for text in (point["question"], point["question"].strip() + suffix):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if input_ids[: len(ids)] == ids:
            return len(ids)
    raise ValueError(
        "input_ids do not start with the tokens of the question; is this a test set of the published format?"
    )


def score_testset(scanner, data, window_size=None, log=None):
    log = log or sys.stderr  # looked up per call: a stream bound at import time may be closed
    logits = {}
    total = sum(len(points) for points in data.values())
    done = 0
    for benchmark, points in data.items():
        logits[benchmark] = {}
        for key, point in points.items():
            prefix = question_prefix_length(scanner.tokenizer, point, scanner.model.config.question_suffix)
            input_ids, ends = list(point["input_ids"]), list(point["sentence_indices"])
            if "full_text_sentences" in point and len(point["full_text_sentences"]) != len(ends):
                raise ValueError(
                    f"{benchmark}/{key}: {len(point['full_text_sentences'])} sentences but "
                    f"{len(ends)} sentence_indices."
                )
            if not ends or ends[0] < prefix or ends[-1] >= len(input_ids):
                raise ValueError(f"{benchmark}/{key}: sentence_indices must lie in the document part of input_ids.")
            logits[benchmark][key] = score_document(
                scanner.model, input_ids[:prefix], input_ids[prefix:], [end - prefix for end in ends], window_size
            )
            done += 1
            print(f"[{done}/{total}] {benchmark} {key}: {len(ends)} sentences", file=log, flush=True)
    return logits


def write_logits(logits, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as handle:
        if path.suffix in PICKLE_SUFFIXES:
            pickle.dump(logits, handle)
        else:
            handle.write(json.dumps(as_json_data(logits)).encode())
