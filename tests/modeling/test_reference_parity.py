"""The model equals transformers' own MambaModel / Mamba2Model run on the same weights."""

import pytest
import torch
import torch.nn.functional as F
from helpers import BACKBONES, PROMPTS, tiny_model

from mamba_retrieval.conversion.parity import transformers_reference as conversion_reference
from mamba_retrieval.modeling.tokenizer import build_tokenizer


def transformers_reference(model):
    """transformers' own backbone holding the retriever's weights (the reference the converter checks against)."""
    return conversion_reference(model.config, model.state_dict())


@pytest.mark.parametrize("backbone", BACKBONES)
def test_hidden_states_match_transformers(backbone):
    model = tiny_model(backbone)
    reference = transformers_reference(model)
    input_ids = torch.randint(2, 50000, (2, 37))  # several Mamba-2 chunks, last one partial
    with torch.no_grad():
        ours = model(input_ids=input_ids).last_hidden_state
        theirs = reference(input_ids=input_ids).last_hidden_state
    scale = theirs.abs().max()
    assert (ours - theirs).abs().max() <= 1e-5 * scale


@pytest.mark.parametrize("backbone", BACKBONES)
def test_embedding_is_normalised_eos_state_of_prompted_text(backbone):
    tokenizer = build_tokenizer()
    model = tiny_model(backbone)
    reference = transformers_reference(model)
    text = PROMPTS["query"] + "what does a selective scan compute?"
    input_ids = tokenizer(text, return_tensors="pt")["input_ids"]
    assert input_ids[0, -1].item() == tokenizer.eos_token_id == 0
    with torch.no_grad():
        embedding = model(input_ids=input_ids).sentence_embedding
        expected = F.normalize(reference(input_ids=input_ids).last_hidden_state[:, -1].float(), dim=-1)
    assert embedding.dtype == torch.float32
    torch.testing.assert_close(embedding, expected, rtol=0, atol=1e-6)
    assert torch.allclose(embedding.norm(dim=-1), torch.ones(1))
