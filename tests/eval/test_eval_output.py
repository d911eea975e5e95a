"""What `mamba-retrieval eval` writes to stderr, in a fresh process as a user runs it (issue 16, item 6): progress
bars and warnings about the user's own model or data; nothing about the libraries' upkeep (a deprecation inside mteb,
a debug line of bm25s)."""

import json
import re

import pytest
from helpers import DATA, run_fresh_python, write_tiny_folder

SCIFACT = DATA / "beir-scifact"
pytestmark = [
    pytest.mark.skipif(not SCIFACT.is_dir(), reason=f"offline data {SCIFACT} is absent"),
    pytest.mark.slow,
]
# a tqdm bar as it is drawn: "Batches:  50%|█████     | 1/2 [00:01<00:01,  1.1s/it]"; mteb draws its bars itself,
# so an environment variable cannot turn them off
PROGRESS_BAR = re.compile(r"[^\r\n|]*\d+%\|[^|\r\n]*\|[^\]\r\n]*\]")
# on a good model and folder: no Python warning as `warnings` prints it ("...py:991: FutureWarning: ...") and no
# logger's debug line; a logger's WARNING line (a notice of the project's own, such as the first-run compile of the
# CPU scan) may stay
LIBRARY_NOISE = re.compile(r"\w+Warning: |^DEBUG:")


def write_small_beir(target, n_queries=3, n_others=5):
    """The first `n_queries` SciFact test queries, their relevant documents and a few others: seconds to evaluate."""
    rows = [line.split("\t") for line in (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    query_ids = sorted({row[0] for row in rows}, key=int)[:n_queries]
    kept = [row for row in rows if row[0] in query_ids]
    relevant = {row[1] for row in kept}
    (target / "qrels").mkdir(parents=True)
    (target / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in kept)
    )
    documents = []
    with open(SCIFACT / "corpus.jsonl") as corpus:
        for line in corpus:
            if json.loads(line)["_id"] in relevant or n_others > 0:
                n_others -= json.loads(line)["_id"] not in relevant
                documents.append(line)
    (target / "corpus.jsonl").write_text("".join(documents))
    with open(SCIFACT / "queries.jsonl") as queries:
        (target / "queries.jsonl").write_text("".join(line for line in queries if json.loads(line)["_id"] in query_ids))
    return target


def messages(stderr):
    """The lines of stderr a user reads: progress bars (and their cursor moves) taken out."""
    text = PROGRESS_BAR.sub("", stderr).replace("\x1b[A", "")
    return [line.strip() for line in re.split(r"[\r\n]", text) if line.strip()]


def eval_messages(tmp_path, model):
    """`mamba-retrieval eval MODEL --beir-dir <small SciFact>` in a new interpreter: what it wrote to stderr."""
    beir = write_small_beir(tmp_path / "scifact-small")
    argv = ["eval", str(model), "--beir-dir", str(beir), "--output", str(tmp_path / "results")]
    code = f"import sys\nfrom mamba_retrieval.modeling.cli import main\nsys.exit(main({argv!r}))\n"
    result = run_fresh_python(code, tmp_path)
    assert result.returncode == 0 and "nDCG@10" in result.stdout, result.stderr[-3000:]
    return messages(result.stderr)


def test_eval_of_the_shipped_model_prints_no_warnings_of_the_libraries(tmp_path):
    """mteb, given a loaded SentenceTransformer, called its renamed `get_sentence_embedding_dimension` (2 x
    FutureWarning)."""
    lines = eval_messages(tmp_path, "mamba-retrieval-tiny")
    assert not [line for line in lines if LIBRARY_NOISE.search(line)], lines


def test_eval_of_bm25_prints_no_debug_lines(tmp_path):
    """bm25s sets its own logger to DEBUG; with the root handler that `eval` installs, its debug lines showed."""
    lines = eval_messages(tmp_path, "bm25")
    assert not [line for line in lines if LIBRARY_NOISE.search(line)], lines
    assert lines == [], lines  # BM25 has nothing to say on a good folder


def test_eval_still_warns_about_the_users_own_model(tmp_path):
    """A folder whose prompts mteb cannot use (a misspelt `document` prompt): mteb's warnings reach the user."""
    folder = tmp_path / "model"
    write_tiny_folder(folder, "mamba")
    st_config = json.loads((folder / "config_sentence_transformers.json").read_text())
    st_config["prompts"] = {"query": "query: ", "docment": "passage: "}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(st_config))
    lines = eval_messages(tmp_path, folder)
    assert any("Some prompts are not in the expected format" in line for line in lines), lines
    assert any("Task name docment is not valid" in line for line in lines), lines
    assert not [line for line in lines if "FutureWarning" in line], lines
