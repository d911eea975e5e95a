"""Answer + judge: token F1 on hand-checked cases, the parsers, the prompts, and `mamba-retrieval answer` over two
QMSum questions with recorded LLM answers and judgements (SPScanner logits, BM25, random and full context)."""

import json
import os
import pickle

import numpy as np
import pytest
from helpers import DATA
from recorded_llm import EXCHANGES, RecordedEndpoint

from mamba_retrieval.eval import answer_judge as aj
from mamba_retrieval.eval.qa_metrics import best_f1, normalize_answer, parse_answer, parse_judge_decision, token_f1
from mamba_retrieval.eval.spscanner_testset import read_testset
from mamba_retrieval.modeling.cli import main

QUERIES = ("IS1003a-s1", "IS1003a-s2")  # two questions on the shortest meeting of QMSum's test split


@pytest.mark.parametrize(
    "prediction, reference, expected",
    [
        ("The cat sat.", "a cat sat", 1.0),  # articles and punctuation do not count
        ("U.S.A.!", "usa", 1.0),
        ("twenty five Euros", "25 Euros", 0.4),  # 1 shared of 3 and 2 tokens: P 1/3, R 1/2
        ("red red blue", "red blue blue green", 4 / 7),  # overlap counts multiplicity: 2 shared, P 2/3, R 1/2
        ("Paris", "London", 0.0),
        ("", "anything", 0.0),
        ("the", "a", 0.0),  # both empty after normalisation: 0, as SQuAD v1.1 and LongBench
    ],
)
def test_token_f1_hand_checked(prediction, reference, expected):
    assert token_f1(prediction, reference) == pytest.approx(expected)


def test_best_f1_takes_the_best_reference_and_normalisation():
    assert best_f1("25 Euros", ["twenty five Euros", "25 Euros"]) == 1.0
    assert normalize_answer("  The  U.S. army, an  army! ") == "us army army"
    with pytest.raises(ValueError):
        best_f1("x", [])


def test_parse_answer():
    assert parse_answer("REASON: because\n\nANSWER: Twelve Euros.\nThat is all.") == "Twelve Euros."
    assert parse_answer("REASON: x\n**ANSWER**: 25 Euros") == "25 Euros"
    assert parse_answer("No keyword here " * 200) == ("No keyword here " * 200)[:2000]


@pytest.mark.parametrize(
    "output, decision",
    [
        ("REASON: same.\nDECISION: YES", "yes"),
        ("**DECISION:** No.", "no"),
        ("Decision: yes, it matches", "yes"),
        ("DECISION:: NO", "no"),
        ("REASON: same.\nDECISION:\nYES", "yes"),  # the decision on the line after the keyword
    ],
)
def test_parse_judge_decision(output, decision):
    assert parse_judge_decision(output) == decision


@pytest.mark.parametrize("output", ["The answer is correct.", "DECISION: maybe", "DECISION:"])
def test_parse_judge_decision_malformed(output):
    with pytest.raises(ValueError):
        parse_judge_decision(output)


def test_prompts_join_sentences_as_the_original():
    point = {
        "question": "Q?",
        "answer": ["A"],
        "answer_type": "sentence",
        "full_text_sentences": ["One. ", "Two. ", "Three. ", "Four."],
        "sentence_indices": [3, 5, 7, 9],
    }
    prompt = aj.answer_prompt("bm25", point, [0, 1, 3])
    assert "Question:\nQ?\n\nContext:\nOne. Two. \nFour.\n\nConnect the dots" in prompt
    assert prompt.endswith('output a short one-sentence answer after the keyword "ANSWER:".\n')
    point["answer_type"] = "paragraph"
    full = aj.answer_prompt("full-context", point, [0, 1])
    assert "Context:\nOne. Two. \n\nRecall, the question is:\nQ?\n" in full and "short one-paragraph" in full
    # the token budget counts document tokens (ends minus the question prefix of 2 tokens)
    assert aj.full_context_units(point, budget=6, question_prefix=2) == 3  # 2, 4, 6 tokens
    assert aj.full_context_units(point, budget=5, question_prefix=2) == 2
    assert aj.full_context_units(point, budget=1, question_prefix=2) == 1
    assert "Reference answer:\nA\n\nCandidate answer:\nB\n" in aj.judge_prompt("Q?", "A", "B")


def test_random_baseline_is_seeded_per_datapoint():
    point = {"full_text_sentences": [str(i) for i in range(100)]}
    first = aj.select_units("random", point, 10, 7906, "b:1")
    assert first == aj.select_units("random", point, 10, 7906, "b:1") and len(first) == 10 and first == sorted(first)
    assert first != aj.select_units("random", point, 10, 7906, "b:2")
    assert len(aj.select_units("random", point, 0.2, 7906, "b:1")) == 20


@pytest.fixture
def qmsum_questions(tmp_path):
    from qmsum_qa_testset import build_testset
    from qmsum_sentence_recall import gold_mask, load_pairs, unit_character_ranges

    if not (DATA / "qmsum-longdoc" / "corpus.jsonl").is_file():
        pytest.skip(f"QMSum data not found in {DATA} (shared/data beside the repository)")
    pairs, corpus = load_pairs(DATA, "test")
    pairs = [pair for pair in pairs if pair["query_id"] in QUERIES]
    data = build_testset(pairs, corpus)
    # An oracle scanner: logit 1 for the units of the gold span, 0 elsewhere (so the test does not depend on weights)
    logits = {"qmsum": {}}
    for pair in pairs:
        mask = gold_mask(corpus[pair["meeting_id"]], pair["relevant_span"])
        units = data["qmsum"][pair["query_id"]]["full_text_sentences"]
        ranges = unit_character_ranges(corpus[pair["meeting_id"]], units)
        logits["qmsum"][pair["query_id"]] = [float(len(r) > 0 and mask[r].mean() >= 0.5) for r in ranges]
    (tmp_path / "testset.json").write_text(json.dumps(data))
    (tmp_path / "logits.json").write_text(json.dumps(logits))
    return tmp_path / "testset.json", tmp_path / "logits.json"


def run_answer(testset, out, endpoint, *extra, model="recorded-model"):
    """`mamba-retrieval answer TESTSET OUT` against the recorded endpoint, no retries."""
    llm = ["--llm-model", model, "--llm-base-url", endpoint.base_url, "--llm-max-retries", "0"]
    return main(["answer", str(testset), str(out), *llm, *extra])


def answer(testset, logits, out, endpoint, *extra):
    return run_answer(testset, out, endpoint, "--logits", str(logits), "--full-context-tokens", "3000", *extra)


def test_answer_and_judge_end_to_end(qmsum_questions, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    testset, logits = qmsum_questions
    out = tmp_path / "answers"
    with RecordedEndpoint(EXCHANGES / "answer_qmsum") as endpoint:
        assert answer(testset, logits, out, endpoint) == 0
    assert endpoint.unmatched == [] and len(endpoint.requests) == 16  # 2 questions x 4 systems, answer + judge
    printed = capsys.readouterr().out
    assert "| qmsum | 1.000 | 1.000 | 0.000 | 1.000 |" in printed  # judged accuracy

    result = json.loads((out / "results.json").read_text())
    table = result["table"]
    assert [table[s]["qmsum"]["accuracy"] for s in aj.SYSTEMS] == [1.0, 1.0, 0.0, 1.0]
    # full context: one judgement held no DECISION, so that datapoint is skipped and counted
    assert table["full-context"]["qmsum"]["skipped"] == {"judge_malformed": 1}
    assert table["full-context"]["qmsum"]["n"] == 1
    # F1 of the one scored full-context answer, checked by hand: 11 shared tokens of 18 and 18
    assert table["full-context"]["qmsum"]["f1"] == pytest.approx(11 / 18)
    records = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    data = json.loads(testset.read_text())["qmsum"]
    for system in ("scanner", "bm25", "random"):
        mine = [r for r in records if r["system"] == system]
        expected = sum(token_f1(r["answer"], data[r["key"]]["answer"][0]) for r in mine) / len(mine)
        assert table[system]["qmsum"]["f1"] == pytest.approx(expected)
        assert table[system]["mean"]["accuracy"] == table[system]["qmsum"]["accuracy"]
    # an answer without "ANSWER:" is taken whole, as the original does
    random_s1 = next(r for r in records if r["system"] == "random" and r["key"] == "IS1003a-s1")
    assert random_s1["answer"].startswith("The context does not say") and random_s1["correct"] is False
    assert {r["n_units"] for r in records if r["system"] != "full-context"} == {10}

    # A rerun is answered from the cache: no requests.
    with RecordedEndpoint() as endpoint:
        assert answer(testset, logits, tmp_path / "again", endpoint, "--llm-cache-dir", str(out / "llm_cache")) == 0
    assert endpoint.requests == []
    assert json.loads((tmp_path / "again" / "results.json").read_text())["table"] == table
    # Declared multiple-choice, the same answers are judged but get no F1 (as in the original).
    with RecordedEndpoint() as endpoint:
        assert (
            answer(
                testset,
                logits,
                tmp_path / "choice",
                endpoint,
                "--llm-cache-dir",
                str(out / "llm_cache"),
                "--multiple-choice",
                "qmsum",
            )
            == 0
        )
    choice = json.loads((tmp_path / "choice" / "results.json").read_text())["table"]
    assert all(choice[s]["qmsum"]["f1"] is None and choice[s]["mean"]["f1"] is None for s in aj.SYSTEMS)
    assert [choice[s]["qmsum"]["accuracy"] for s in aj.SYSTEMS] == [1.0, 1.0, 0.0, 1.0]


def test_answer_refuses_missing_inputs(qmsum_questions, tmp_path, monkeypatch, capsys):
    testset, _ = qmsum_questions
    (tmp_path / "empty.json").write_text(json.dumps({"qmsum": {}}))
    out = tmp_path / "o"
    with RecordedEndpoint() as endpoint:
        assert run_answer(testset, out, endpoint, "--systems", "scanner", model="m") == 2
        assert "needs logits" in capsys.readouterr().err
        assert run_answer(testset, out, endpoint, "--logits", str(tmp_path / "empty.json"), model="m") == 2
        assert "No scanner logits" in capsys.readouterr().err
        # an endpoint that knows none of the prompts: the run stops with an error and writes no results
        assert run_answer(testset, out, endpoint, "--systems", "bm25", model="m") == 1
        assert "requests failed" in capsys.readouterr().err
    assert not (out / "results.json").exists()


def test_scanner_folder_selects_what_its_logits_file_selects(qmsum_questions, tmp_path, monkeypatch):
    """`answer --scanner FOLDER` scores the test set itself; its prompts equal those built from the logits file that
    `mamba-retrieval score-testset` writes for the same folder."""
    from recorded_llm import chat_completion, message_key

    from mamba_retrieval.modeling.scanner.sentence_scanner import random_scanner, write_scanner_folder

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    testset, _ = qmsum_questions
    write_scanner_folder(random_scanner("mamba2-tiny", seed=3), tmp_path / "scanner")
    assert main(["score-testset", str(tmp_path / "scanner"), str(testset), str(tmp_path / "scanner_logits.json")]) == 0
    logits = aj.read_logits(tmp_path / "scanner_logits.json")
    data = json.loads(testset.read_text())
    exchanges = {}
    for key, point in data["qmsum"].items():
        prompt = aj.answer_prompt("scanner", point, aj.select_units("scanner", point, 10, 0, key, logits["qmsum"][key]))
        judge = aj.judge_prompt(point["question"], point["answer"][0], "An answer.")
        for text, reply in ((prompt, "ANSWER: An answer."), (judge, "DECISION: NO")):
            messages = [{"role": "user", "content": text}]
            exchanges[message_key(messages)] = {
                "request": {"messages": messages},
                "replies": [{"status": 200, "body": chat_completion(reply)}],
            }
    with RecordedEndpoint(exchanges=exchanges) as endpoint:
        scanner = ["--scanner", str(tmp_path / "scanner"), "--systems", "scanner"]
        assert run_answer(testset, tmp_path / "out", endpoint, *scanner) == 0
    assert endpoint.unmatched == [] and len(endpoint.requests) == 4
    table = json.loads((tmp_path / "out" / "results.json").read_text())["table"]
    assert table["scanner"]["qmsum"]["accuracy"] == 0.0 and table["scanner"]["qmsum"]["n"] == 2


class RunsCode:
    """What a hostile pickle holds: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    hostile = {
        "qmsum": {("qmsum", "0"): {"input_ids": [1], "question": "q", "sentence_indices": [0], "x": RunsCode(marker)}}
    }
    (tmp_path / "test.pickle").write_bytes(pickle.dumps(hostile))
    (tmp_path / "logits.pkl").write_bytes(pickle.dumps(RunsCode(marker)))
    with pytest.raises(ValueError, match=r"Refused test set .*names posix\.system"):
        read_testset(tmp_path / "test.pickle")
    with pytest.raises(ValueError, match="Refused logits file"):
        aj.read_logits(tmp_path / "logits.pkl")
    assert main(["answer", str(tmp_path / "test.pickle"), str(tmp_path / "out"), "--llm-model", "m"]) == 2
    assert main(["testset-to-json", str(tmp_path / "test.pickle"), str(tmp_path / "test.json")]) == 2
    assert "not plain data" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "test.json").exists() and not (tmp_path / "out").exists()


def test_a_published_pickle_of_plain_data_converts_to_json_once(tmp_path):
    data = {"qmsum": {("qmsum", "0"): {"input_ids": np.arange(3), "question": "q", "sentence_indices": (0, 2)}}}
    (tmp_path / "test.pickle").write_bytes(pickle.dumps(data))
    assert read_testset(tmp_path / "test.pickle")["qmsum"][("qmsum", "0")]["input_ids"].tolist() == [0, 1, 2]
    assert main(["testset-to-json", str(tmp_path / "test.pickle"), str(tmp_path / "test.json")]) == 0
    converted = read_testset(tmp_path / "test.json")
    assert converted == {
        "qmsum": {"('qmsum', '0')": {"input_ids": [0, 1, 2], "question": "q", "sentence_indices": [0, 2]}}
    }
    assert main(["testset-to-json", str(tmp_path / "test.pickle"), str(tmp_path / "test.json")]) == 2  # kept
