"""Fixtures; the helpers they use are in helpers.py (import them from there, not from conftest)."""

import pytest
from helpers import BACKBONES, write_tiny_folder


@pytest.fixture(scope="session", params=BACKBONES)
def tiny_folder(request, tmp_path_factory):
    """(backbone, folder, model, tokenizer) for a Hub folder written once per backbone."""
    folder = tmp_path_factory.mktemp(f"hub-{request.param}") / "model"
    model, tokenizer = write_tiny_folder(folder, request.param)
    return request.param, folder, model, tokenizer


@pytest.fixture(autouse=True)
def own_cache_folder(tmp_path_factory, monkeypatch):
    """Each test gets its own cache folder (default search indexes, model identities), never the user's, and no test
    asks the Hugging Face Hub for anything; commands run in a subprocess inherit both."""
    monkeypatch.setenv("MAMBA_RETRIEVAL_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
