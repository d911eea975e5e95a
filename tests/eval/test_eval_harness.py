"""`mamba-retrieval eval`, `bundle` and `card` on a tiny random Mamba folder and a small slice of SciFact."""

import json
import shutil

import mteb
import pytest
import yaml
from helpers import DATA, PROMPTS, write_tiny_folder
from mteb.models import ModelMeta
from mteb.results import TaskResult
from mteb.types import PromptType

from mamba_retrieval.eval.evaluation import evaluate
from mamba_retrieval.eval.leaderboard_bundle import build_model_meta, write_bundle
from mamba_retrieval.eval.local_tasks import local_beir_task
from mamba_retrieval.eval.loco import loco_task, read_loco_split
from mamba_retrieval.eval.model_specs import resolve_model
from mamba_retrieval.eval.result_files import sourced_scores
from mamba_retrieval.eval.training_metrics import record_metrics
from mamba_retrieval.hub_cards.render import UnsourcedNumberError, check_sourced, write_card
from mamba_retrieval.modeling.cli import main

SCIFACT = DATA / "beir-scifact"
pytestmark = pytest.mark.skipif(not SCIFACT.is_dir(), reason=f"offline data {SCIFACT} is absent")


def write_beir_slice(target, n_queries=8, n_distractors=24):
    """The first `n_queries` SciFact test queries, their relevant documents and some others, in BEIR layout."""
    qrels = (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]
    query_ids = sorted({line.split("\t")[0] for line in qrels}, key=int)[:n_queries]
    kept = [line for line in qrels if line.split("\t")[0] in query_ids]
    relevant = {line.split("\t")[1] for line in kept}
    (target / "qrels").mkdir(parents=True)
    (target / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(kept) + "\n")
    documents, distractors = [], 0
    with open(SCIFACT / "corpus.jsonl") as corpus:
        for line in corpus:
            document_id = json.loads(line)["_id"]
            if document_id in relevant or distractors < n_distractors:
                distractors += document_id not in relevant
                documents.append(line)
    (target / "corpus.jsonl").write_text("".join(documents))
    with open(SCIFACT / "queries.jsonl") as queries:
        (target / "queries.jsonl").write_text("".join(line for line in queries if json.loads(line)["_id"] in query_ids))
    return target


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny Mamba folder, a SciFact slice, and one finished eval run of the folder (and of BM25) on it."""
    root = tmp_path_factory.mktemp("eval")
    write_tiny_folder(root / "model", "mamba")
    beir = write_beir_slice(root / "scifact-slice")
    output = root / "results-out"
    logs = []
    folder, scores = evaluate(
        str(root / "model"), beir_dirs=[beir], output=output, batch_size=8, show_progress_bar=False, log=logs.append
    )
    bm25_folder, bm25_scores = evaluate(
        "bm25", beir_dirs=[beir], output=output, show_progress_bar=False, log=logs.append
    )
    return dict(
        root=root,
        model=root / "model",
        beir=beir,
        output=output,
        folder=folder,
        scores=scores,
        bm25_folder=bm25_folder,
        bm25_scores=bm25_scores,
        logs=logs,
    )


def test_eval_writes_mteb_result_files_and_the_summary_matches_them(workspace):
    folder = workspace["folder"]
    assert folder == workspace["output"] / "results" / "local__model" / folder.name
    assert folder.name.startswith("sha256-")
    result = TaskResult.from_disk(folder / "scifact-slice.json")
    assert result.task_name == "scifact-slice" and result.mteb_version == mteb.__version__
    stored_meta = json.loads((folder / "model_meta.json").read_text())
    assert (stored_meta["name"], stored_meta["revision"]) == ("local/model", folder.name)
    [score] = workspace["scores"]
    assert (score.task, score.split, score.metric) == ("scifact-slice", "test", "ndcg_at_10")
    assert score.value == result.scores["test"][0]["ndcg_at_10"]
    assert 0.0 <= score.value <= 1.0


def test_queries_and_documents_get_the_folder_prompts(workspace):
    wrapper = resolve_model(str(workspace["model"])).load_model()
    task = local_beir_task(workspace["beir"])
    assert wrapper.model_prompts == PROMPTS
    assert wrapper.get_prompt_name(task.metadata, PromptType.query) == "query"
    assert wrapper.get_prompt_name(task.metadata, PromptType.document) == "document"


def test_bm25_runs_through_the_same_harness_with_anserini_parameters(workspace):
    folder = workspace["bm25_folder"]
    assert folder.parent.name == "experiments" and folder.name == "b_0.4__k1_0.9"
    [score] = workspace["bm25_scores"]
    assert score.value == json.loads((folder / "scifact-slice.json").read_text())["scores"]["test"][0]["ndcg_at_10"]
    search = resolve_model("bm25").load_model()
    assert (search.k1, search.b) == (0.9, 0.4)
    # The relevant documents share words with the claims: BM25 finds most of them among 32 documents.
    assert score.value > 0.5


def test_resume_skips_finished_tasks_and_runs_only_new_ones(workspace, tmp_path):
    finished = workspace["folder"] / "scifact-slice.json"
    before = finished.read_bytes(), finished.stat().st_mtime_ns
    second = shutil.copytree(workspace["beir"], tmp_path / "scifact-slice-2")
    logs = []
    folder, scores = evaluate(
        str(workspace["model"]),
        beir_dirs=[workspace["beir"], second],
        output=workspace["output"],
        show_progress_bar=False,
        log=logs.append,
    )
    assert logs == ["scifact-slice: done already (result file found), skipped", "scifact-slice-2: to run"]
    assert (finished.read_bytes(), finished.stat().st_mtime_ns) == before
    assert [score.task for score in scores] == ["scifact-slice", "scifact-slice-2"]
    # Same data under another name: the same model scores it the same.
    assert scores[0].value == scores[1].value
    (folder / "scifact-slice-2.json").write_text('{"dataset_revision": ')  # a run killed while mteb wrote it
    with pytest.raises(ValueError, match=r"scifact-slice-2.json is not a readable result file .*delete it"):
        evaluate(str(workspace["model"]), beir_dirs=[second], output=workspace["output"], show_progress_bar=False)
    (folder / "scifact-slice-2.json").unlink()


def copy_as_registered_task(source_folder, task_name="SciFact"):
    """A result file relabelled as an mteb-registered task, to exercise what only registered tasks get (the
    leaderboard bundle and the Hub's .eval_results). The scores are the local run's, unchanged."""
    data = json.loads((source_folder / "scifact-slice.json").read_text())
    data["task_name"] = task_name
    data["dataset_revision"] = mteb.get_task(task_name).metadata.revision
    (source_folder / f"{task_name}.json").write_text(json.dumps(data))
    return source_folder / f"{task_name}.json"


def test_card_renders_with_parsable_yaml_and_numbers_from_the_result_files(workspace, tmp_path):
    model = shutil.copytree(workspace["model"], tmp_path / "model")  # same weights: same results folder
    registered = copy_as_registered_task(workspace["folder"])
    try:
        written = write_card(
            model,
            workspace["output"],
            repo_id="me/tiny-mamba",
            revision="abc123",
            eval_name="local/model",
            base_model="state-spaces/mamba-130m-hf",
        )
    finally:
        registered.unlink()
    text = (model / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["library_name"] == "sentence-transformers"
    assert {"mteb", "custom_code"} <= set(front["tags"])
    assert front["base_model"] == "state-spaces/mamba-130m-hf" and front["license"] == "apache-2.0"
    assert 'revision="abc123"' in text and "trust_remote_code=True" in text and "AutoModel" in text
    assert "'query: '" in text and "'passage: '" in text
    rows = {
        line.split(" | ")[0].strip("| "): line.split(" | ")
        for line in text.splitlines()
        if line.startswith("| scifact-slice") or line.startswith("| SciFact")
    }
    model_score = workspace["scores"][0].value
    bm25_score = workspace["bm25_scores"][0].value
    assert set(rows) == {"scifact-slice", "SciFact"}
    assert rows["scifact-slice"][3] == f"{100 * model_score:.2f}"
    assert rows["scifact-slice"][4] == f"{100 * bm25_score:.2f}"  # the baseline beside it
    assert rows["SciFact"][3] == f"{100 * model_score:.2f}" and rows["SciFact"][4] == "-"  # BM25 has no SciFact file
    assert all(mteb.__version__ in row[-1] for row in rows.values())
    # The Hub's .eval_results: only for the registered task, in mteb's format.
    [eval_yaml] = [path for path in written if path.suffix == ".yaml"]
    assert eval_yaml.name == "SciFact.yaml"
    entries = yaml.safe_load(eval_yaml.read_text())
    assert entries[0]["dataset"]["id"] == "mteb/scifact"
    assert entries[0]["value"] == round(model_score * 100, 5)


def test_training_record_gets_its_metrics_from_the_result_files_and_the_card_shows_it(workspace, tmp_path):
    model = shutil.copytree(workspace["model"], tmp_path / "model")  # same weights: same results folder
    with pytest.raises(FileNotFoundError, match="training.json"):
        record_metrics(model, workspace["output"])
    record = {
        "command": "mamba-retrieval distil mini out --seed 3",
        "teacher": "t",
        "data": ["glosses.jsonl.gz"],
        "seed": 3,
        "steps": 10,
        "wall_seconds": 42,
        "log": [{"step": 10, "tokens_per_second": 1234}],
    }
    (model / "training.json").write_text(json.dumps(record))
    metrics = record_metrics(model, workspace["output"], metric="ndcg_at_10")
    stored = json.loads((model / "training.json").read_text())
    assert stored["metrics"] == metrics and stored["seed"] == 3
    assert metrics["ndcg_at_10"] == {"scifact-slice": round(workspace["scores"][0].value, 5)}
    assert metrics["split"] == ["test"] and metrics["result_files"][0].endswith("scifact-slice.json")
    write_card(model, workspace["output"], eval_name="local/model", baselines=False)
    card = (model / "README.md").read_text()
    assert "## Training" in card and "`mamba-retrieval distil mini out --seed 3`" in card
    assert "seed `3`" in card and "1,234 tokens/s" in card
    # trained further from another folder: both stages, the first first, and the total wall time
    further = {
        **record,
        "command": "mamba-retrieval distil out again --row-map",
        "wall_seconds": 8,
        "started_from": {"folder": "out", "training": record},
        "total_wall_seconds": 50,
    }
    (model / "training.json").write_text(json.dumps(further))
    write_card(model, workspace["output"], eval_name="local/model", baselines=False, force=True)
    card = (model / "README.md").read_text()
    assert (
        card.index("- stage 1:")
        < card.index("distil mini out --seed 3")
        < card.index("- stage 2:")
        < card.index("distil out again --row-map")
        < card.index("- total wall time: `50` s")
    )
    other = shutil.copytree(workspace["model"], tmp_path / "other")  # other weights: no results of its own
    (other / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    (other / "training.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="has no results for"):
        record_metrics(other, workspace["output"])


def test_card_refuses_numbers_it_cannot_source(workspace):
    scores = sourced_scores(workspace["folder"] / "scifact-slice.json")
    good = f"| scifact-slice | test | nDCG@10 | {100 * scores[0].value:.2f} | `sha256-1.5` |"
    check_sourced(good, scores)
    with pytest.raises(UnsourcedNumberError, match="12.34"):
        check_sourced(good + " 12.34 |", scores)


def test_card_refuses_results_of_another_model(workspace, tmp_path):
    other = tmp_path / "other-model"
    write_tiny_folder(other, "mamba", seed=1)
    with pytest.raises(ValueError, match="has no results for local/other-model .* It holds results for: .*local/model"):
        write_card(other, workspace["output"])
    assert "Made with [mamba-retrieval]" in (other / "README.md").read_text()  # untouched


def test_card_never_replaces_a_user_readme_without_force(workspace, tmp_path):
    model = shutil.copytree(workspace["model"], tmp_path / "model")
    (model / "README.md").write_text("my own notes\n")
    with pytest.raises(FileExistsError, match="--force"):
        write_card(model, workspace["output"], eval_name="local/model")
    assert (model / "README.md").read_text() == "my own notes\n"


def test_bundle_model_meta_validates_with_mteb_and_results_use_the_repository_layout(workspace, tmp_path):
    registered = copy_as_registered_task(workspace["folder"])
    try:
        snippet, target, left_out = write_bundle(
            str(workspace["model"]),
            workspace["output"],
            tmp_path / "bundle",
            name="me/tiny-mamba",
            revision="abc123",
            release_date="2026-01-02",
            training_datasets=["MSMARCO"],
            adapted_from="state-spaces/mamba-130m-hf",
        )
    finally:
        registered.unlink()
    assert target == tmp_path / "bundle" / "results" / "me__tiny-mamba" / "abc123"
    assert sorted(path.name for path in target.iterdir()) == ["SciFact.json", "model_meta.json"]
    assert left_out == ["scifact-slice"]
    namespace = {}
    exec(snippet.read_text(), namespace)
    [meta] = [value for value in namespace.values() if isinstance(value, ModelMeta)]
    expected = build_model_meta(
        workspace["model"],
        name="me/tiny-mamba",
        revision="abc123",
        release_date="2026-01-02",
        training_datasets=["MSMARCO"],
        adapted_from="state-spaces/mamba-130m-hf",
    )
    assert meta == expected
    assert meta.loader_kwargs == {"trust_remote_code": True} and meta.embed_dim == 32
    assert meta.n_parameters == sum(p.numel() for p in write_tiny_folder(tmp_path / "m", "mamba")[0].parameters())
    stored = ModelMeta.model_validate_json_resolved((target / "model_meta.json").read_text())
    assert (stored.name, stored.revision, stored.training_datasets) == ("me/tiny-mamba", "abc123", {"MSMARCO"})
    assert TaskResult.from_disk(target / "SciFact.json").task_name == "SciFact"


def test_bundle_rejects_training_sets_that_are_not_mteb_tasks(workspace):
    with pytest.raises(ValueError, match="NotATask"):
        build_model_meta(workspace["model"], name="me/x", revision="r", training_datasets=["NotATask"])


def write_loco_copy(root):
    """A local LoCoV1 copy in the public schema: two sub-tasks, long documents, qrels from answer_pids."""
    rows_q, rows_d = [], []
    for subtask in ("qmsum", "gov_report"):
        for i in range(6):
            rows_d.append(
                {
                    "pid": f"{subtask}_Passage_{i}",
                    "dataset": subtask,
                    "passage": f"Meeting {i} of the {subtask} committee. " * 40,
                }
            )
        for i in range(3):
            rows_q.append(
                {
                    "qid": f"{subtask}_Query_{i}",
                    "dataset": subtask,
                    "query": f"What did meeting {i} say?",
                    "answer_pids": [f"{subtask}_Passage_{i}"],
                }
            )
    for name, rows in (("LoCoV1-Queries", rows_q), ("LoCoV1-Documents", rows_d)):
        (root / name).mkdir(parents=True)
        (root / name / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


def test_loco_tasks_read_the_public_schema_offline(workspace, tmp_path):
    loco = write_loco_copy(tmp_path / "loco")
    split = read_loco_split("qmsum", loco)
    assert split["queries"]["id"] == ["qmsum_Query_0", "qmsum_Query_1", "qmsum_Query_2"]
    assert len(split["corpus"]) == 6
    assert split["relevant_docs"]["qmsum_Query_1"] == {"qmsum_Passage_1": 1}
    assert loco_task("LoCoV1QMSum", loco).metadata.name == "LoCoV1QMSum"
    folder, scores = evaluate(
        str(workspace["model"]),
        tasks=["LoCoV1QMSum"],
        loco_dir=loco,
        output=tmp_path / "out",
        show_progress_bar=False,
        log=lambda line: None,
    )
    assert (folder / "LoCoV1QMSum.json").is_file() and scores[0].task == "LoCoV1QMSum"


def test_bad_input_gives_clear_errors(workspace, tmp_path, capsys):
    def error_of(*argv):
        assert main(list(argv)) == 2
        return capsys.readouterr().err

    out = str(tmp_path / "out")
    assert "is no folder here, no shipped model" in error_of(
        "eval", str(tmp_path / "missing"), "--beir-dir", str(workspace["beir"]), "--output", out
    )
    assert "does not exist" in error_of(
        "eval", str(workspace["model"]), "--beir-dir", str(tmp_path / "nope"), "--output", out
    )
    no_qrels = shutil.copytree(workspace["beir"], tmp_path / "no-qrels")
    shutil.rmtree(no_qrels / "qrels")
    assert "no qrels" in error_of("eval", str(workspace["model"]), "--beir-dir", str(no_qrels), "--output", out)
    assert "qrels/dev.tsv" in error_of(
        "eval", str(workspace["model"]), "--beir-dir", str(workspace["beir"]), "--split", "dev", "--output", out
    )
    assert "No task named 'NotATask'" in error_of(
        "eval", str(workspace["model"]), "--tasks", "NotATask", "--output", out
    )
    changed = shutil.copytree(workspace["beir"], tmp_path / "scifact-slice")  # same task name, other data
    with open(changed / "queries.jsonl", "a") as queries:
        queries.write(json.dumps({"_id": "extra", "text": "an extra query"}) + "\n")
    assert "its data changed" in error_of(
        "eval", str(workspace["model"]), "--beir-dir", str(changed), "--output", str(workspace["output"])
    )
    assert "Nothing to evaluate" in error_of("eval", str(workspace["model"]), "--output", out)
    assert "does not exist" in error_of("card", str(workspace["model"]), "--results", str(tmp_path / "none"))
    assert not (tmp_path / "out").exists()


def test_benchmarks_name_the_papers_tasks_without_loading_data():
    from mamba_retrieval.eval.benchmarks import BEIR_13
    from mamba_retrieval.eval.task_selection import select_tasks

    beir = select_tasks(benchmark="BEIR")
    assert [task.metadata.name for task in beir] == [*BEIR_13, "MSMARCO"] and len(BEIR_13) == 13
    assert beir[-1].eval_splits == ["dev"]
    assert [task.metadata.name for task in select_tasks(benchmark="LongEmbed")] == [
        task.metadata.name for task in mteb.get_benchmark("LongEmbed").tasks
    ]
    loco = select_tasks(benchmark="LoCo")
    assert len(loco) == 12 and {"LoCoV1SummScreenFD", "LoCoV1QasperTitle", "LoCoV1QasperAbstract"} <= {
        task.metadata.name for task in loco
    }
    assert not any(task.data_loaded for task in beir + loco)
    with pytest.raises(ValueError, match="no split 'validation'"):
        select_tasks(["SciFact"], split="validation")
