"""EOS and padding contract: every text embeds the same alone and in any padded batch; truncation keeps the EOS."""

import pytest
import torch
from helpers import BACKBONES, TEXTS, embed, tiny_model
from transformers import AutoTokenizer

from mamba_retrieval.modeling.tokenizer import PAPER_EOS, build_tokenizer


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_text_embeds_the_same_alone_and_in_a_padded_batch(backbone, padding_side):
    model, tokenizer = tiny_model(backbone), build_tokenizer()
    batch = embed(model, tokenizer, TEXTS, padding_side=padding_side)
    assert len({len(tokenizer(t)["input_ids"]) for t in TEXTS}) > 1  # the batch really is padded
    for i, text in enumerate(TEXTS):
        alone = embed(model, tokenizer, [text])  # a batch of one, no padding
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=0, atol=2e-6)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_padding_tokens_do_not_matter(backbone):
    """Pooling follows the attention mask, not token ids: pad id may equal the EOS id."""
    model, tokenizer = tiny_model(backbone), build_tokenizer()
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).sentence_embedding
        for pad_id in (0, 1, 12345):
            ids = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, pad_id)
            got = model(input_ids=ids, attention_mask=batch["attention_mask"]).sentence_embedding
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_tokenizer_appends_eos_and_truncation_keeps_it():
    tokenizer = build_tokenizer(model_max_length=6)
    assert tokenizer("Hello world")["input_ids"] == [12092, 1533, 0]
    assert tokenizer("")["input_ids"] == [0]
    long = tokenizer("one two three four five six seven eight", truncation=True)["input_ids"]
    assert len(long) == 6 and long[-1] == 0
    batch = tokenizer(["a", "one two three four five six seven"], padding=True, truncation=True)
    assert [row[-1] for row in batch["input_ids"]][1] == 0
    assert batch["attention_mask"][0] == [1, 1, 0, 0, 0, 0]  # right padding


@pytest.mark.parametrize("eos_token, eos_id", [("<|endoftext|>", 0), (PAPER_EOS, 50277)])
def test_eos_is_configurable_and_round_trips(tmp_path, eos_token, eos_id):
    tokenizer = build_tokenizer(eos_token, model_max_length=16)
    assert tokenizer.eos_token_id == eos_id
    assert tokenizer("Hello world")["input_ids"] == [12092, 1533, eos_id]
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.eos_token == eos_token and reloaded.eos_token_id == eos_id
    assert reloaded("Hello world")["input_ids"] == [12092, 1533, eos_id]
    truncated = reloaded("one two three four five six seven " * 5, truncation=True)["input_ids"]
    assert len(truncated) == 16 and truncated[-1] == eos_id
    assert reloaded.padding_side == "right"


def test_unknown_eos_token_is_added_as_a_special_token():
    tokenizer = build_tokenizer("<my-eos>")
    assert tokenizer.eos_token_id == 50277
    assert tokenizer.convert_ids_to_tokens(tokenizer("x <my-eos>")["input_ids"])[-1] == "<my-eos>"
