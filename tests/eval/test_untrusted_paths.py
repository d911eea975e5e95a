"""Names that become paths (a revision, a model name, a task name) never leave the folder they are meant for; data
that would change scores silently (duplicate ids, judgements of absent documents) is refused or counted."""

import json

import pytest

from mamba_retrieval.modeling.cli import main
from mamba_retrieval.modeling.safe_paths import inside, path_component


@pytest.mark.parametrize("name", ["..", ".", "", "../x", "a/b", "a\\b", "x\0y"])
def test_a_name_that_could_leave_its_folder_is_refused(name):
    with pytest.raises(ValueError, match="cannot be a file or folder name"):
        path_component(name, "--revision")


@pytest.mark.parametrize("shard", ["../outside.bin", "/etc/passwd", "a/../../b.bin", "..\\up.bin"])
def test_a_shard_outside_the_checkpoint_is_refused(tmp_path, shard):
    with pytest.raises(ValueError, match="points outside"):
        inside(tmp_path, shard, "Shard")
    assert inside(tmp_path, "sub/model-00001.bin", "Shard") == tmp_path / "sub" / "model-00001.bin"


def test_bundle_revision_cannot_delete_a_folder_outside_out(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    out = tmp_path / "a" / "b" / "out"
    out.mkdir(parents=True)
    (out / "old").write_text("x")
    arguments = ["bundle", "mamba-retrieval-tiny", "--results", str(tmp_path), "--out", str(out), "--name", "org/m"]
    assert main([*arguments, "--revision", "../../../../../victim", "--force"]) == 2
    assert "--revision '../../../../../victim' cannot be a file or folder name" in capsys.readouterr().err
    assert (victim / "keep.txt").read_text() == "mine"
    assert main([*arguments[:-2], "--name", "../../x", "--revision", "abc", "--force"]) == 2
    assert "--name '../../x' must be org/name or name" in capsys.readouterr().err


def test_eval_revision_and_model_name_cannot_write_outside_output(tmp_path, capsys):
    output = tmp_path / "results"
    for option, value in (("--revision", "../../escaped"), ("--model-name", "org/..")):
        arguments = ["eval", "mamba-retrieval-tiny", "--beir-dir", str(tmp_path), "--output", str(output)]
        assert main([*arguments, option, value]) == 2
        assert f"{option} {value!r}" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # nothing written anywhere


def write_beir(folder, corpus, qrels):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus))
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "which?"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q1\t{d}\t1\n" for d in qrels))


def test_duplicate_document_ids_are_refused_and_dangling_qrels_counted(tmp_path, caplog, capsys):
    """Duplicate _ids and qrels naming absent documents changed SciFact's nDCG@10 silently (0.843 -> 0.830 / 0.811)."""
    from mamba_retrieval.eval.local_tasks import read_beir_split

    rows = [{"_id": "d1", "text": "one"}, {"_id": "d2", "text": "two"}]
    write_beir(tmp_path / "dangling", rows, ["d1", "gone1", "gone2"])
    with caplog.at_level("WARNING"):
        split = read_beir_split(tmp_path / "dangling", "test")
    assert split["corpus"]["id"] == ["d1", "d2"] and "2 judgement(s) name documents that are not in" in caplog.text
    write_beir(tmp_path / "duplicates", [*rows, {"_id": "d1", "text": "again"}], ["d1"])
    with pytest.raises(ValueError, match=r"corpus.jsonl:3: document id 'd1' again \(first at .*corpus.jsonl:1\)"):
        read_beir_split(tmp_path / "duplicates", "test")
    assert main(["index", str(tmp_path / "duplicates"), "--index", str(tmp_path / "index")]) == 2
    assert "document id 'd1' again" in capsys.readouterr().err and not (tmp_path / "index").exists()


def test_unreadable_data_and_result_files_are_named(tmp_path):
    from mamba_retrieval.eval.local_tasks import read_beir_split

    write_beir(tmp_path / "latin1", [{"_id": "d1", "text": "one"}], ["d1"])
    (tmp_path / "latin1" / "corpus.jsonl").write_bytes('{"_id": "d1", "text": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"corpus.jsonl:1 is not UTF-8 text"):
        read_beir_split(tmp_path / "latin1", "test")
    write_beir(tmp_path / "unjudged", [{"_id": "d1", "text": "one"}], [])
    with pytest.raises(ValueError, match=r"queries.jsonl has no query that .*test.tsv judges"):
        read_beir_split(tmp_path / "unjudged", "test")


def test_a_hub_task_offline_is_a_one_line_error(tmp_path):
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "mamba_retrieval.modeling.cli", "eval", "bm25", "--tasks", "SciFact"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(
        [*command, "--output", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "could not be downloaded" in result.stderr and "--beir-dir" in result.stderr


@pytest.mark.parametrize(
    "corpus, qrels_line, error",
    [
        (
            '{"_id": "d1", "text": null}',
            "q1\td1\t1",
            r"corpus.jsonl:1: expected a JSON object with '_id' .* string 'text'",
        ),
        ('{"_id": "d1", "text": "one"}', "q1\td1\t0.5", r"test.tsv:2: expected 'query-id<TAB>corpus-id<TAB>score'"),
        ("", "q1\td1\t1", r"corpus.jsonl holds no documents"),
    ],
)
def test_corpus_and_qrels_errors_name_the_file_and_line(tmp_path, corpus, qrels_line, error):
    from mamba_retrieval.eval.local_tasks import read_beir_split

    write_beir(tmp_path / "beir", [], [])
    (tmp_path / "beir" / "corpus.jsonl").write_text(corpus + "\n")
    (tmp_path / "beir" / "qrels" / "test.tsv").write_text(f"query-id\tcorpus-id\tscore\n{qrels_line}\n")
    with pytest.raises(ValueError, match=error):
        read_beir_split(tmp_path / "beir", "test")
