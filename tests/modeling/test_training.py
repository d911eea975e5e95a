"""The training recipe: a few real steps on a handful of pairs; the loss falls and the folder loads."""

import json

import pytest
import torch
from sentence_transformers import SentenceTransformer

from mamba_retrieval.modeling.cli import main
from mamba_retrieval.modeling.tokenizer import build_tokenizer
from mamba_retrieval.modeling.training.retriever import Example, mine_bm25_negatives, read_examples, truncate_queries

PAIRS = [
    ("capital of france", "Paris is the capital and largest city of France."),
    ("boiling point of water", "Water boils at 100 degrees Celsius at sea level."),
    ("largest planet", "Jupiter is the largest planet in the Solar System."),
    ("author of hamlet", "Hamlet is a tragedy written by William Shakespeare."),
    ("speed of light", "Light travels at about 300,000 kilometres per second."),
    ("tallest mountain", "Mount Everest is Earth's highest mountain above sea level."),
    ("chemical symbol for gold", "Gold has the chemical symbol Au and atomic number 79."),
    ("inventor of the telephone", "Alexander Graham Bell patented the first practical telephone."),
]


def write_pairs(path):
    path.write_text("".join(json.dumps({"query": q, "positive": p}) + "\n" for q, p in PAIRS))
    return path


@pytest.mark.parametrize("start", ["tiny", "mamba2-tiny"])
def test_training_lowers_the_loss_and_writes_a_loadable_folder(tmp_path, start, capsys):
    data = write_pairs(tmp_path / "pairs.jsonl")
    out = tmp_path / "trained"
    torch.manual_seed(0)
    assert (
        main(
            [
                "train",
                start,
                str(out),
                "--data",
                str(data),
                "--batch-size",
                "8",
                "--max-steps",
                "16",
                "--learning-rate",
                "1e-3",
                "--warmup-ratio",
                "0",
                "--logging-steps",
                "1",
                "--hard-negatives",
                "1",
                "--query-prompt",
                "query: ",
                "--document-prompt",
                "passage: ",
            ]
        )
        == 0
    )
    record = json.loads((out / "training.json").read_text())
    losses = [e["loss"] for e in record["log"] if "loss" in e]
    assert len(losses) == 16
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3, losses
    assert record["columns"] == ["anchor", "positive", "negative_1"] and record["temperature"] == 0.01
    model = SentenceTransformer(str(out), trust_remote_code=True, device="cpu")
    assert model.prompts["query"] == "query: " and model.max_seq_length == 128
    queries = model.encode_query([q for q, _ in PAIRS], convert_to_tensor=True)
    passages = model.encode_document([p for _, p in PAIRS], convert_to_tensor=True)
    # trained on exactly these pairs: most queries now rank their own passage first (chance: 1 of 8)
    correct = (model.similarity(queries, passages).argmax(dim=1) == torch.arange(len(PAIRS))).sum().item()
    assert correct >= 5, correct


def test_bm25_negatives_are_hard_and_never_the_positive():
    corpus = [p for _, p in PAIRS] + ["Paris Hilton is a media personality.", "France borders Spain and Italy."]
    examples = mine_bm25_negatives([Example(q, p, []) for q, p in PAIRS[:2]], corpus, count=2, skip=0)
    assert all(len(e.negatives) == 2 and e.positive not in e.negatives for e in examples)
    assert "France borders Spain and Italy." in examples[0].negatives  # shares "france" with the query


def test_queries_are_truncated_before_the_eos():
    tokenizer = build_tokenizer()
    [example] = truncate_queries([Example("one two three four five six", "p", [])], tokenizer, 3)
    assert example.query == "one two three"


def test_training_data_errors(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: each line needs string fields 'query' and 'positive'"):
        read_examples(tmp_path / "bad.jsonl")
    (tmp_path / "beir").mkdir()
    with pytest.raises(FileNotFoundError, match="no qrels/train.tsv"):
        read_examples(tmp_path / "beir")
