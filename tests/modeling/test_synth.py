"""Link-based synthetic data: the original's rules one by one, then the whole `synth` command over four QMSum
meetings with recorded LLM answers, and `train-scanner` on its output."""

import json
import random

import pytest
from helpers import DATA
from recorded_llm import EXCHANGES, RecordedEndpoint, load_exchanges

from mamba_retrieval.modeling.cli import main
from mamba_retrieval.modeling.scanner import synthetic_data as sd
from mamba_retrieval.modeling.scanner.training import check_example, read_training_jsonl

MEETINGS = ("ES2005a", "IS1004a", "ES2010a", "ES2013a")  # the four shortest meetings of QMSum's train split


def test_box_around_the_chunk():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(5, 600)
        first, box_first, box_last = sd.sample_chunk_and_box(n, rng)
        assert 0 <= box_first <= first and first + 4 <= box_last < n
        assert box_last - box_first + 1 <= 200
    # a long document: 10 before + 190 after, or 185 before + 15 after (both 200 here: a coin flip)
    boxes = {sd.sample_chunk_and_box(1000, FixedChoice(500, pick))[1:] for pick in (0, 1)}
    assert boxes == {(490, 689), (315, 514)}
    # near the start the box that reaches further wins
    assert sd.sample_chunk_and_box(1000, FixedChoice(3))[1:] == (0, 192)
    assert sd.sample_chunk_and_box(1000, FixedChoice(990))[1:] == (805, 999)
    with pytest.raises(ValueError, match="at least 5 units"):
        sd.sample_chunk_and_box(4, rng)


def test_several_chunks_per_document_are_distinct_and_seeded():
    chunks = sd.sample_chunks(6, "42:doc", 10)  # only two chunk starts exist
    assert sorted(first for _, (first, _, _) in chunks) == [0, 1]
    assert chunks == sd.sample_chunks(6, "42:doc", 10)
    assert chunks[0] == (0, sd.sample_chunk_and_box(6, random.Random("42:doc:0")))
    assert len(sd.sample_chunks(500, "42:doc", 3)) == 3


class FixedChoice:
    """rng.choice that returns a given chunk start, then a given side."""

    def __init__(self, first, side=0):
        self.answers = [first, side]

    def choice(self, options):
        value = self.answers.pop(0)
        return value if isinstance(options, range) else options[value]


def test_connection_prompt_lists_the_box_without_the_chunk():
    units = [f"Unit {i} \u2014 text ,\n" for i in range(12)]
    prompt, line_units = sd.connection_prompt(units, 3, 0, 11)
    assert line_units == [0, 1, 2, 8, 9, 10, 11]
    assert prompt == (
        "Given a chunk of sentences\nChunk:\n"
        "Unit 3 text , Unit 4 text , Unit 5 text , Unit 6 text , Unit 7 text , \n"
        "what other sentences in the document are highly connected to this chunk? Output each sentence index "
        "that is highly connected to the chunk, and explain the reason.\nDocument:\n"
        "Index 0: Unit 0 text ,\nIndex 1: Unit 1 text ,\nIndex 2: Unit 2 text ,\nIndex 3: Unit 8 text ,\n"
        "Index 4: Unit 9 text ,\nIndex 5: Unit 10 text ,\nIndex 6: Unit 11 text ,\n\n"
    )


def test_remove_special_characters():
    assert sd.remove_special_characters("  Caf\u00e9 \u2014 na\u00efve\n\tok\u00a0!  ") == "Caf\u00e9 na\u00efve ok !"


GPT4O_ANSWER = """1. **Index 2**: "The budget is fixed."
   - **Reason**: It gives the budget the chunk discusses.

2. **Index 5**: "We sell it for twenty five."
   - Reason: The price in the chunk.
"""


def test_parse_connections():
    line_units = [10, 11, 12, 20, 21, 22]
    assert sd.parse_connections(GPT4O_ANSWER, line_units) == (
        {12: "It gives the budget the chunk discusses.", 22: "The price in the chunk."},
        None,
    )
    headed = (
        '**Index 1**: "a"\n**Index 3**: "b"\n\n### Reasons for Connection:\n'
        '**Index 1**: "same topic"\n**Index 3**: "same speaker"\n'
    )
    assert sd.parse_connections(headed, line_units) == ({11: "same topic", 20: "same speaker"}, None)
    assert sd.parse_connections("Index 2 and Index 5 are connected.", line_units) == (None, "no_indices")
    assert sd.parse_connections('**Index 2**: "x"\n', line_units) == (None, "indices_sentences_reasons_differ")
    plain = '1. Index 2: "the budget"\n   Reason: same budget\n- Index 5: "price"\n  - Reason: the price\n'
    assert sd.parse_connections(plain, line_units) == ({12: "same budget", 22: "the price"}, None)
    assert sd.parse_connections('**Index 2:** "x"\nReason: y\n', line_units) == ({12: "y"}, None)
    out_of_box = GPT4O_ANSWER.replace("Index 5", "Index 6")
    assert sd.parse_connections(out_of_box, line_units) == (None, "index_out_of_box")


def test_farthest_connection():
    # chunk = units 40..44: range is the distance to the chunk's far end
    assert sd.connection_range(30, 40) == 14 and sd.connection_range(50, 40) == 10
    connections = {30: "a", 50: "b", 54: "c", 26: "d"}
    assert sd.farthest_connections(connections, 40) == [(26, 18)]
    assert sd.farthest_connections({26: "d", 58: "e"}, 40) == [(26, 18), (58, 18)]  # ties are all kept
    assert sd.farthest_connections({49: "x", 35: "y"}, 40) == []  # ranges 9: too short
    assert sd.farthest_connections({26: "Project Gutenberg licence"}, 40) == []


def test_parse_question():
    assert sd.parse_question("REASON: because.\n\nQUESTION: Who drew the cat?") == ("Who drew the cat?", None)
    assert sd.parse_question("REASON: x\n**QUESTION:** Who drew the cat?\n") == ("Who drew the cat?", None)
    assert sd.parse_question("QUESTION: Who?\n\nVERIFICATION: it is fine.\nDone.") == (None, "question_not_at_end")
    assert sd.parse_question("REASON: x\nQUESTION: Who drew the cat?\n\n\n") == ("Who drew the cat?", None)
    assert sd.parse_question("Who drew the cat?") == (None, "no_question_keyword")
    assert sd.parse_question("REASON: x\nQUESTION:  ") == (None, "empty_question")


def test_needed_sentence_parts_and_prompt():
    assert sd.needed_sentence_parts(100, 40, 60) == (list(range(38, 47)), list(range(57, 64)))
    assert sd.needed_sentence_parts(52, 1, 50) == (list(range(0, 8)), list(range(47, 52)))
    with pytest.raises(ValueError, match="too close"):
        sd.needed_sentence_parts(100, 40, 49)
    units = [f"u{i}" for i in range(100)]
    prompt, listed = sd.needed_sentences_prompt(units, "Q?", [5, 6], [1, 2])
    assert listed == [1, 2, 5, 6]
    assert "Question:\nQ?\n\nlist of text elements:\nIndex 0: u1\nIndex 1: u2\nIndex 2: u5\nIndex 3: u6\n\n" in prompt


def test_parse_needed_sentences():
    listed = [7, 8, 9, 30, 31]
    assert sd.parse_needed_sentences("REASON: ...\nLIST: [0, 3, 3]", listed) == ([7, 30], None)
    assert sd.parse_needed_sentences("REASON: LIST: is below\n**LIST:** [4]\nThese help.", listed) == ([31], None)
    assert sd.parse_needed_sentences("LIST: []", listed) == (None, "empty_list")
    assert sd.parse_needed_sentences("LIST: [1.5, 2]", listed) == (None, "list_not_integers")
    assert sd.parse_needed_sentences("LIST: [5]", listed) == (None, "index_out_of_list")
    assert sd.parse_needed_sentences("[1, 2]", listed) == (None, "no_list_keyword")


def test_training_example_and_one_per_chunk():
    example = sd.training_example([101, 187], list(range(1000, 1010)), [3, 6, 9], [0, 2])
    assert example == {
        "input_ids": [101, 187] + list(range(1000, 1010)),
        "sentence_indices": [5, 8, 11],
        "sentence_labels": [1, 0, 1],
    }
    check_example(example)
    candidates = [
        {"chunk_key": "a#0", "connection_range": 12, "id": 1},
        {"chunk_key": "a#0", "connection_range": 30, "id": 2},
        {"chunk_key": "b#0", "connection_range": 11, "id": 3},
    ]
    assert [c["id"] for c in sd.one_per_source_chunk(candidates, seed=0)] == [2, 3]


def test_document_filter():
    english = "The committee said that it was not ready for the vote, and all of them went home. " * 20
    german = "Der Ausschuss erklärte, dass er für die Abstimmung nicht bereit sei, und alle gingen nach Hause. " * 20
    assert sd.document_problem(english, 2000, 1000, 5000) is None
    assert sd.document_problem(german, 2000, 1000, 5000) == "not_english"
    assert sd.document_problem(english, 999, 1000, 5000) == "too_short"
    assert sd.document_problem(english, 5001, 1000, 5000) == "too_long"


@pytest.fixture
def meetings_corpus(tmp_path):
    corpus = DATA / "qmsum-longdoc" / "corpus.jsonl"
    if not corpus.is_file():
        pytest.skip(f"QMSum transcripts not found at {corpus} (shared/data beside the repository)")
    with open(corpus, encoding="utf-8") as handle:
        rows = {row["_id"]: row for row in map(json.loads, handle) if row["_id"] in MEETINGS}
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(rows[m]) + "\n" for m in MEETINGS))
    return path


def synth(corpus, out, endpoint, *extra):
    return main(
        [
            "synth",
            str(corpus),
            str(out),
            "--llm-model",
            "recorded-model",
            "--llm-base-url",
            endpoint.base_url,
            "--llm-max-retries",
            "0",
            *extra,
        ]
    )


def test_synth_end_to_end_on_qmsum_then_train_scanner(meetings_corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    out = tmp_path / "synth"
    recorded = load_exchanges(EXCHANGES / "synth_qmsum")
    connections_only = {key: value for key, value in recorded.items() if "Given a chunk of sentences" in key}
    # 1. The endpoint knows only the connection prompts: that step finishes, the next one stops without output.
    with RecordedEndpoint(exchanges=connections_only) as endpoint:
        assert synth(meetings_corpus, out, endpoint) == 1
    assert "requests of step questions failed" in capsys.readouterr().err
    assert (out / "connections.jsonl").exists() and not (out / "questions.jsonl").exists()
    # Every connection prompt was exactly one of the recorded ones (prompts built as the original builds them).
    assert len(endpoint.requests) == 4 + 3 and len(endpoint.unmatched) == 3
    # 2. Rerun with every recorded answer: connections are not asked again.
    with RecordedEndpoint(EXCHANGES / "synth_qmsum") as endpoint:
        assert synth(meetings_corpus, out, endpoint) == 0
    assert endpoint.unmatched == [] and len(endpoint.requests) == 3 + 2
    stats = json.loads((out / "stats.json").read_text())
    assert stats["documents"] == {"kept": 4, "skipped": {}}
    model = {"llm_model": "recorded-model"}
    assert stats["connections"] == {"kept": 3, "skipped": {"no_indices": 1}, **model}
    assert stats["questions"] == {"kept": 2, "skipped": {"question_not_at_end": 1}, **model}
    assert stats["needed"] == {"kept": 1, "skipped": {"needed_not_on_both_sides": 1}, **model}
    assert stats["llm_this_run"]["requests"] == 5 and stats["llm_this_run"]["cache_hits"] == 0

    examples = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(examples) == 1
    example = examples[0]
    assert (example["doc_id"], example["chunk_first"], example["selected"]) == ("ES2005a", 6, 35)
    assert example["connection_range"] == 29 and example["needed_units"] == [7, 9, 10, 35]
    assert [i for i, label in enumerate(example["sentence_labels"]) if label] == [7, 9, 10, 35]
    documents = {d["doc_id"]: d for d in map(json.loads, (out / "documents.jsonl").read_text().splitlines())}
    question = (
        "For how much does the Project Manager say the remote control has to be made, given its selling "
        "price of twenty five Euros?"
    )
    assert example["question"] == question
    from mamba_retrieval.modeling.scanner.sentence_scanner import build_scanner_tokenizer

    question_ids = build_scanner_tokenizer()(question + "\n", add_special_tokens=False)["input_ids"]
    assert example["input_ids"] == question_ids + documents["ES2005a"]["input_ids"]
    assert example["sentence_indices"] == [e + len(question_ids) for e in documents["ES2005a"]["end_positions"]]

    # 3. Deleting the last steps and rerunning costs nothing: every answer comes from the cache.
    (out / "needed.jsonl").unlink()
    (out / "train.jsonl").unlink()
    with RecordedEndpoint() as endpoint:
        assert synth(meetings_corpus, out, endpoint) == 0
    assert endpoint.requests == []
    assert json.loads((out / "stats.json").read_text())["llm_this_run"]["cache_hits"] == 2
    assert read_training_jsonl(out / "train.jsonl")[0]["sentence_labels"] == example["sentence_labels"]

    # 4. Other settings on the same folder are refused.
    with RecordedEndpoint() as endpoint:
        assert synth(meetings_corpus, out, endpoint, "--seed", "7") == 2
    assert "seed" in capsys.readouterr().err

    # 5. The scanner's training command accepts the data and runs a step with a tiny random scanner.
    from mamba_retrieval.modeling.scanner.sentence_scanner import random_scanner, write_scanner_folder

    write_scanner_folder(random_scanner("mamba2-tiny", seed=0), tmp_path / "scanner")
    assert (
        main(
            ["train-scanner", str(tmp_path / "scanner"), str(tmp_path / "trained"), "--data", str(out / "train.jsonl")]
        )
        == 0
    )
    assert "1 steps" in capsys.readouterr().out
    assert (tmp_path / "trained" / "model.safetensors").is_file()


def test_synth_documents_step_needs_no_llm(meetings_corpus, tmp_path):
    assert (
        main(["synth", str(meetings_corpus), str(tmp_path / "out"), "--until", "documents", "--min-doc-tokens", "2000"])
        == 0
    )
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["documents"] == {"kept": 3, "skipped": {"too_short": 1}}


def test_synth_refuses_a_range_that_makes_the_needed_parts_overlap(meetings_corpus, tmp_path, capsys):
    assert main(["synth", str(meetings_corpus), str(tmp_path / "out"), "--min-range", "9"]) == 2
    assert "--min-range must be >= 10" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
