"""SPScanner: sentence scoring model, segmentation, windowed scan, Hub folder, training recipe."""

import json
import math

import pytest
import torch
from helpers import run_fresh_python

from mamba_retrieval.conversion.spscanner_reference import TransformersScannerReference
from mamba_retrieval.modeling.configuration_mamba_retrieval import MambaScannerConfig
from mamba_retrieval.modeling.modeling_mamba_retrieval import MambaForSentenceScoring, sentence_bce_loss
from mamba_retrieval.modeling.scanner.segmentation import merge_pieces, segment_document, split_pieces, split_sentences
from mamba_retrieval.modeling.scanner.sentence_scanner import (
    SentenceScanner,
    build_scanner_tokenizer,
    join_context,
    question_token_ids,
    score_document,
    sentence_windows,
    top_k_count,
    top_k_indices,
    write_scanner_folder,
)
from mamba_retrieval.modeling.scanner.training import collate, learning_rate_factor, read_training_jsonl, train_scanner

TOKENIZER = build_scanner_tokenizer()
DOCUMENT = " ".join(
    f"Paragraph {i} says that the committee met on day {i} and discussed item {i * 7}, which was costly; "
    f"the members agreed to revisit it. Dr. Smith noted that budget line {i} had grown by {i} percent."
    for i in range(40)
)


def tiny_scanner(seed=0, **overrides):
    fields = dict(vocab_size=50288, hidden_size=32, num_hidden_layers=2, state_size=8, head_dim=16, chunk_size=8)
    torch.manual_seed(seed)
    model = MambaForSentenceScoring(MambaScannerConfig(**{**fields, **overrides})).eval()
    with torch.no_grad():  # a non-zero bias, so that tests see it used
        model.binary_head.bias.fill_(0.25)
    return model


# ---------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------


def test_config_defaults_are_the_published_pipeline():
    config = MambaScannerConfig()
    assert (config.window_size, config.stride, config.question_suffix, config.min_unit_tokens) == (
        120_000,
        60_000,
        "\n",
        20,
    )
    assert config.backbone == "mamba2" and config.model_type == "mamba_scanner"
    with pytest.raises(ValueError, match="Mamba-2"):
        MambaScannerConfig(backbone="mamba")
    with pytest.raises(ValueError, match="window_stride"):
        MambaScannerConfig(window_size=100, window_stride=200)


def test_logits_match_transformers_mamba2_plus_head():
    model = tiny_scanner()
    reference = TransformersScannerReference.from_scanner(model)
    input_ids = torch.randint(2, 50000, (2, 45))
    positions = torch.tensor([[3, 10, 20, 44], [5, 17, -1, -1]])
    with torch.no_grad():
        ours = model(input_ids=input_ids, sentence_end_positions=positions)
        theirs = reference(input_ids, positions).logits
    assert ours.logits.shape == (2, 4) and ours.logits.dtype == torch.float32
    assert ours.sentence_mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert torch.isinf(ours.logits[1, 2:]).all() and (ours.logits[1, 2:] < 0).all()
    real = ours.sentence_mask
    scale = theirs[real].abs().max()
    assert (ours.logits[real] - theirs[real]).abs().max() <= 1e-5 * scale
    assert not any("lm_head" in name for name in model.state_dict())


def test_right_padding_does_not_change_a_documents_logits():
    model = tiny_scanner()
    short, long_ = torch.randint(2, 50000, (1, 20)), torch.randint(2, 50000, (1, 33))
    batch = torch.cat([torch.cat([short, torch.zeros(1, 13, dtype=torch.long)], 1), long_])
    mask = torch.ones_like(batch)
    mask[0, 20:] = 0
    with torch.no_grad():
        alone = model(input_ids=short, sentence_end_positions=torch.tensor([[4, 19]])).logits
        batched = model(
            input_ids=batch, attention_mask=mask, sentence_end_positions=torch.tensor([[4, 19, -1], [3, 9, 32]])
        ).logits
    torch.testing.assert_close(batched[0, :2], alone[0], rtol=0, atol=1e-5)


def test_bad_inputs_are_clear_errors():
    model = tiny_scanner()
    ids = torch.randint(2, 500, (1, 10))
    with pytest.raises(ValueError, match="sentence_end_positions"):
        model(input_ids=ids)
    with pytest.raises(ValueError, match="beyond the 10 tokens"):
        model(input_ids=ids, sentence_end_positions=torch.tensor([[3, 10]]))
    with pytest.raises(ValueError, match="input_ids must lie"):
        model(input_ids=ids + 60000, sentence_end_positions=torch.tensor([[3]]))
    with pytest.raises(ValueError, match="padding"):
        model(
            input_ids=ids, attention_mask=torch.tensor([[1] * 5 + [0] * 5]), sentence_end_positions=torch.tensor([[7]])
        )


def test_loss_is_bce_with_batch_pos_weight():
    logits = torch.tensor([[2.0, -1.0, 0.5, -torch.inf], [0.0, 1.0, -2.0, 3.0]])
    labels = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0]])
    mask = torch.tensor([[True, True, True, False], [True] * 4])
    real_logits, real_labels = logits[mask], labels[mask].float()
    pos_weight = 5 / 2  # 5 negatives, 2 positives among the 7 real sentences
    terms = -(
        pos_weight * real_labels * torch.nn.functional.logsigmoid(real_logits)
        + (1 - real_labels) * torch.nn.functional.logsigmoid(-real_logits)
    )
    torch.testing.assert_close(sentence_bce_loss(logits, labels, mask), terms.mean())


# ---------------------------------------------------------------------------------------------------------------
# Segmentation
# ---------------------------------------------------------------------------------------------------------------


def test_punkt_english_knows_abbreviations():
    assert split_sentences("Dr. Smith went home. He was tired.") == ["Dr. Smith went home.", "He was tired."]


def test_pieces_follow_the_original_rules():
    pieces = split_pieces("First part, second part; third part. " + "word " * 120 + "end.\n" + "x" * 1200 + ".")
    assert pieces[:3] == ["First part,", " second part;", " third part."]
    long_words = [p for p in pieces if "word" in p]
    assert [len(p.split()) for p in long_words] == [50, 50, 21]  # 120 words + "end." cut every 50 words
    assert all(len(p) < 1000 for p in pieces)  # the 1200-character piece is dropped


def test_pieces_merge_until_min_tokens_and_short_tail_joins_previous():
    assert merge_pieces(["a", "b", "c", "d", "e"], [15, 10, 25, 30, 5], 20) == (["ab", "c", "de"], [25, 25, 35])
    assert merge_pieces(["a"], [3], 20) == (["a"], [3])


def test_units_have_min_tokens_and_end_tokens_close_each_unit():
    doc = segment_document(DOCUMENT, TOKENIZER)
    assert len(doc.units) > 20
    counts = [len(TOKENIZER(u, add_special_tokens=False)["input_ids"]) for u in doc.units]
    assert min(counts) >= 15  # >= 20 counted piece by piece; whole-unit tokenization may merge a few
    assert doc.input_ids == TOKENIZER("".join(doc.units), add_special_tokens=False)["input_ids"]
    assert doc.end_positions == sorted(set(doc.end_positions)) and doc.end_positions[-1] == len(doc.input_ids) - 1
    text_so_far = ""
    for unit, end in zip(doc.units, doc.end_positions):
        text_so_far += unit
        decoded = TOKENIZER.decode(doc.input_ids[: end + 1])
        assert text_so_far.startswith(decoded) and len(text_so_far) - len(decoded) <= 3


def test_short_document_is_one_unit_and_empty_document_is_an_error():
    doc = segment_document("Just one line.", TOKENIZER)
    assert doc.units == ["Just one line."] and doc.end_positions == [len(doc.input_ids) - 1]
    with pytest.raises(ValueError, match="no text"):
        segment_document(" \n ", TOKENIZER)


# ---------------------------------------------------------------------------------------------------------------
# Windows, top-k, context
# ---------------------------------------------------------------------------------------------------------------


def test_windows_hold_whole_units_overlap_by_half_and_end_aligned():
    ends = [i * 10 + 9 for i in range(10)]  # ten units of ten tokens
    assert sentence_windows(ends, 40, 20) == [(0, 3), (1, 4), (2, 5), (3, 6), (4, 7), (5, 8), (6, 9)]
    assert sentence_windows(ends, 1000, 500) == [(0, 9)]
    assert sentence_windows([99, 109], 40, 20) == [(0, 0), (1, 1)]  # a unit longer than the window stands alone


def test_top_k_rules():
    assert top_k_count(300, 10) == 10 and top_k_count(300, 0.1) == 30 and top_k_count(50, 0.1) == 10
    assert top_k_count(5, 10) == 5
    with pytest.raises(ValueError):
        top_k_count(10, 0)
    assert top_k_indices([0.1, 0.9, 0.5, 0.9, -1.0], 3) == [1, 2, 3]
    assert top_k_indices([1.0, 1.0, 1.0], 2) == [0, 1]  # ties go to the earlier sentence


def test_context_joins_adjacent_units_directly_and_gaps_with_newline():
    units = ["A one.", "B two.", "C three.", "D four."]
    assert join_context(units, [0, 1, 3]) == "A one.B two.\nD four."
    assert join_context(units, [2]) == "C three."


def test_windowed_scores_are_means_over_windows():
    model = tiny_scanner(window_size=60)
    question = question_token_ids(TOKENIZER, "  what did the committee decide? ")
    assert question == TOKENIZER("what did the committee decide?\n", add_special_tokens=False)["input_ids"]
    doc = segment_document(DOCUMENT[:1000], TOKENIZER)
    windows = sentence_windows(doc.end_positions, 60, 30)
    assert len(windows) > 3
    scores = score_document(model, question, doc.input_ids, doc.end_positions)
    expected_sum, expected_count = [0.0] * len(scores), [0] * len(scores)
    for first, last in windows:
        start = 0 if first == 0 else doc.end_positions[first - 1] + 1
        ids = torch.tensor([question + doc.input_ids[start : doc.end_positions[last] + 1]])
        pos = torch.tensor([[len(question) + doc.end_positions[i] - start for i in range(first, last + 1)]])
        with torch.no_grad():
            logits = model(input_ids=ids, sentence_end_positions=pos).logits[0]
        for offset, value in enumerate(logits.tolist()):
            expected_sum[first + offset] += value
            expected_count[first + offset] += 1
    assert min(expected_count) >= 1
    assert scores == pytest.approx([s / c for s, c in zip(expected_sum, expected_count)], abs=1e-6)


def test_scan_matches_the_transformers_reference_path():
    model = tiny_scanner(window_size=150)
    document = DOCUMENT[:4000]
    ours = SentenceScanner(model, TOKENIZER).scan("Which budget line grew?", document, top_k=0.2)
    theirs = SentenceScanner(TransformersScannerReference.from_scanner(model), TOKENIZER).scan(
        "Which budget line grew?", document, top_k=0.2
    )
    assert len(ours.indices) == max(10, math.ceil(len(ours.units) * 0.2))
    assert ours.indices == sorted(ours.indices) == theirs.indices
    assert ours.all_scores == pytest.approx(theirs.all_scores, abs=1e-4)
    assert ours.context == join_context(ours.units, ours.indices)


# ---------------------------------------------------------------------------------------------------------------
# Hub folder and command line
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scanner_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scanner") / "model"
    model = tiny_scanner(window_size=150)
    write_scanner_folder(model, folder)
    return folder, model


def test_scanner_folder_is_self_contained_and_loads_offline(scanner_folder, tmp_path):
    folder, model = scanner_folder
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "mamba_scanner"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_mamba_retrieval.MambaScannerConfig",
        "AutoModel": "modeling_mamba_retrieval.MambaForSentenceScoring",
    }
    assert not (folder / "modules.json").exists()  # no sentence-transformers pipeline for a scanner
    expected = SentenceScanner(model, TOKENIZER).scan("Which budget line grew?", DOCUMENT[:3000], top_k=5)
    code = f"""
import json
from transformers import AutoModel
from mamba_retrieval.modeling.scanner.sentence_scanner import SentenceScanner
model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True)
assert type(model).__name__ == "MambaForSentenceScoring", type(model)
result = SentenceScanner.from_pretrained({str(folder)!r}).scan("Which budget line grew?", {DOCUMENT[:3000]!r}, top_k=5)
print(json.dumps([result.indices, result.all_scores]))
"""
    process = run_fresh_python(code, tmp_path)
    assert process.returncode == 0, process.stderr
    indices, scores = json.loads(process.stdout.strip().splitlines()[-1])
    assert indices == expected.indices
    assert scores == pytest.approx(expected.all_scores, abs=1e-6)


def test_scan_command(scanner_folder, tmp_path, capsys):
    from mamba_retrieval.modeling.cli import main

    folder, _ = scanner_folder
    document = tmp_path / "doc.txt"
    document.write_text(DOCUMENT)
    assert (
        main(
            [
                "scan",
                str(folder),
                "--question",
                "Which budget line grew?",
                "--document",
                str(document),
                "--top-k",
                "0.1",
                "--json",
            ]
        )
        == 0
    )
    output = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(output["selected"]) == max(10, math.ceil(output["n_units"] * 0.1))
    assert [s["index"] for s in output["selected"]] == sorted(s["index"] for s in output["selected"])
    assert main(["scan", str(folder), "--question", "q", "--document", str(tmp_path / "missing.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Training recipe
# ---------------------------------------------------------------------------------------------------------------


def test_learning_rate_schedule():
    factors = [learning_rate_factor(step, 100) for step in range(101)]
    assert factors[0] == 0 and factors[5] == pytest.approx(0.5) and factors[10] == pytest.approx(1.0)
    assert factors[100] == pytest.approx(0.1) and all(a >= b for a, b in zip(factors[10:], factors[11:]))


def test_training_jsonl_is_checked(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"input_ids": [1, 2, 3], "sentence_indices": [1, 2], "sentence_labels": [0]}) + "\n")
    with pytest.raises(ValueError, match="train.jsonl:1"):
        read_training_jsonl(path)
    batch = collate(
        [
            {"input_ids": [5, 6, 7], "sentence_indices": [2], "sentence_labels": [1]},
            {"input_ids": [5], "sentence_indices": [0, 0][:1], "sentence_labels": [0]},
        ]
    )
    assert batch["sentence_end_positions"].tolist() == [[2], [0]] and batch["input_ids"][1].tolist() == [5, 0, 0]


def test_tiny_training_run_lowers_the_loss(tmp_path):
    """Examples in the published format where the relevant units are those naming the question's item."""
    doc = segment_document(DOCUMENT[:2000], TOKENIZER)
    examples = []
    for target in range(4):
        item = f"item {target * 7}"
        labels = [int(item + "," in unit) for unit in doc.units]
        question = question_token_ids(TOKENIZER, f"Which paragraph is about {item}?")
        examples.append(
            {
                "input_ids": question + doc.input_ids,
                "sentence_indices": [len(question) + e for e in doc.end_positions],
                "sentence_labels": labels,
            }
        )
    assert all(sum(e["sentence_labels"]) >= 1 for e in examples)
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in examples))
    model = tiny_scanner(seed=1)
    losses = train_scanner(model.train(), read_training_jsonl(path), epochs=10, batch_size=2, peak_lr=3e-3, min_lr=3e-4)
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.7 * first, losses


def test_testset_logits_file_in_the_published_format(scanner_folder, tmp_path):
    import pickle

    from mamba_retrieval.modeling.cli import main

    folder, model = scanner_folder
    scanner = SentenceScanner(model, TOKENIZER)
    data, expected = {}, {}
    for benchmark, question, text in (
        ("qasper", "Which budget line grew?", DOCUMENT[:1500]),
        ("narrativeqa", "Who is Dr. Smith?", DOCUMENT[1500:2600]),
    ):
        doc = segment_document(text, TOKENIZER)
        prefix = question_token_ids(TOKENIZER, question)
        data[benchmark] = {
            (benchmark, "0"): {
                "input_ids": prefix + doc.input_ids,
                "full_text_sentences": doc.units,
                "question": question + "\n",
                "answer": "-",
                "answer_type": "sentence",
                "sentence_indices": [len(prefix) + e for e in doc.end_positions],
            }
        }
        expected[benchmark] = scanner.score(question, doc.input_ids, doc.end_positions)
    (tmp_path / "test.pickle").write_bytes(pickle.dumps(data))
    arguments = ["score-testset", str(folder), str(tmp_path / "test.pickle"), str(tmp_path / "logits.pickle")]
    assert main(arguments) == 0
    logits = pickle.loads((tmp_path / "logits.pickle").read_bytes())
    assert {b: list(points) for b, points in logits.items()} == {b: list(points) for b, points in data.items()}
    for benchmark in data:
        assert logits[benchmark][(benchmark, "0")] == pytest.approx(expected[benchmark], abs=1e-6)
    assert main(arguments) == 2  # OUTPUT exists: refused, nothing replaced
