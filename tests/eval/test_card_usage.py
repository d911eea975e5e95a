"""The model card's and the README's usage, run as printed: sentence-transformers, transformers, LangChain and
LlamaIndex give a folder's embeddings with its query and document prompts, for the shipped model (empty prompts)
and for a folder with prompts of its own. The LangChain and LlamaIndex snippets run where those clients are
installed (`pip install langchain-huggingface` / `llama-index-embeddings-huggingface`); their arguments are checked
everywhere."""

import ast
import json
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO
from sentence_transformers import SentenceTransformer

from mamba_retrieval.eval.evaluation import evaluate
from mamba_retrieval.hub_cards.render import render_card
from mamba_retrieval.modeling.cli import main
from mamba_retrieval.modeling.pretrained import DEFAULT_MODEL, model_path

QUERY = "what is a state-space model?"
DOCUMENTS = ["Mamba is a selective state-space model.", "Paris is in France."]
PROMPTS = {"query": "query: ", "document": "passage: "}
REPO_ID, REVISION = "org/prompted-retriever", "0123abcd"
README = (REPO / "README.md").read_text()
README_FOLDER = "my-retriever"  # the Quick start's folder name
CLIENT_MODULES = {"langchain": "langchain_huggingface", "llamaindex": "llama_index.embeddings.huggingface"}
# the block that holds each client's usage, told apart by what it imports or calls
MARKERS = {
    "sentence-transformers": "model.encode_query(",
    "transformers": "from transformers import",
    "langchain": "from langchain_huggingface import",
    "llamaindex": "from llama_index.embeddings.huggingface import",
}


def python_block(markdown, client):
    [block] = [block for block in re.findall(r"```python\n(.*?)```", markdown, re.DOTALL) if MARKERS[client] in block]
    return block


def call_keywords(code, function):
    """The keyword arguments of the one call to `function` in `code`, as Python values."""
    [call] = [
        node
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == function
    ]
    return {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}


def run_block(code, name, folder):
    """Run a usage snippet with the model name `name` replaced by the local folder; returns its variables."""
    assert f'"{name}"' in code
    namespace = {}
    exec(compile(code.replace(f'"{name}"', repr(str(folder))), f"<usage of {name}>", "exec"), namespace)
    return namespace


def write_beir_folder(folder):
    """Two queries over three documents: enough for `eval` to write the result file a card is rendered from."""
    (folder / "qrels").mkdir(parents=True)
    documents = [*DOCUMENTS, "The state of a Mamba layer has a fixed size."]
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n" for i, text in enumerate(documents))
    )
    queries = [QUERY, "where is Paris?"]
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": text}) + "\n" for i, text in enumerate(queries))
    )
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td1\t1\n")
    return folder


@pytest.fixture(scope="module")
def prompted(tmp_path_factory):
    """(folder, card): a tiny folder with prompts, made as the README's Quick start makes one, and its card."""
    root = tmp_path_factory.mktemp("card-usage")
    folder = root / "prompted"
    prompt_options = ["--query-prompt", PROMPTS["query"], "--document-prompt", PROMPTS["document"]]
    assert main(["init", "tiny", str(folder), *prompt_options]) == 0
    output = root / "results-out"
    evaluate(str(folder), beir_dirs=[write_beir_folder(root / "tiny-beir")], output=output, show_progress_bar=False)
    return folder, render_card(folder, output, repo_id=REPO_ID, revision=REVISION, baselines=False)


@pytest.fixture(scope="module")
def shipped():
    """(folder, card): the shipped model and its card, rendered as modeling/README.md says."""
    folder = Path(model_path(DEFAULT_MODEL))
    start = os.getcwd()
    os.chdir(REPO)  # the card names the results folder as given: relative to the checkout
    try:
        card = render_card(folder, Path("eval", "results", DEFAULT_MODEL), repo_id=DEFAULT_MODEL)
    finally:
        os.chdir(start)
    return folder, card


@pytest.fixture(scope="module", params=["prompted", "shipped"])
def card_case(request):
    """(folder, card, the model name the card uses, the folder loaded by sentence-transformers), for each folder."""
    folder, card = request.getfixturevalue(request.param)
    name = REPO_ID if request.param == "prompted" else DEFAULT_MODEL
    model = SentenceTransformer(str(folder), trust_remote_code=True)
    return folder, card, name, model


def reference(model):
    """What sentence-transformers gives: (query, documents) with the prompts, and (query, documents) without."""
    with_prompts = model.encode_query([QUERY])[0], model.encode_document(DOCUMENTS)
    return with_prompts, (model.encode([QUERY])[0], model.encode(DOCUMENTS))


def max_diff(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def test_the_prompts_matter_for_the_prompted_folder(prompted):
    folder, _ = prompted
    model = SentenceTransformer(str(folder), trust_remote_code=True)
    assert model.prompts == PROMPTS
    (query, documents), (plain_query, plain_documents) = reference(model)
    # what a client that drops the prompts gets is measurably another embedding (float noise is ~1e-7)
    assert max_diff(query, plain_query) > 1e-5 and max_diff(documents, plain_documents) > 1e-3


def test_the_shipped_card_is_the_template_rendered(shipped):
    """The card in the shipped folder is what `mamba-retrieval card` renders now: rerun the command in
    modeling/README.md after editing the template."""
    folder, card = shipped
    assert (folder / "README.md").read_text() == card


def test_card_gives_langchain_and_llamaindex_the_folder_prompts(prompted):
    """The silent drop: LangChain encodes with no prompt unless named, LlamaIndex with its own instructions."""
    _, card = prompted
    assert call_keywords(python_block(card, "langchain"), "HuggingFaceEmbeddings") == {
        "model_name": REPO_ID,
        "model_kwargs": {"trust_remote_code": True, "revision": REVISION},
        "encode_kwargs": {"prompt_name": "document"},
        "query_encode_kwargs": {"prompt_name": "query"},
    }
    assert call_keywords(python_block(card, "llamaindex"), "HuggingFaceEmbedding") == {
        "model_name": REPO_ID,
        "trust_remote_code": True,
        "revision": REVISION,
        "query_instruction": PROMPTS["query"],
        "text_instruction": PROMPTS["document"],
    }


def test_readme_gives_langchain_and_llamaindex_the_quick_start_prompts():
    init = next(line for line in README.splitlines() if line.startswith("mamba-retrieval init "))
    arguments = shlex.split(init)
    prompts = {name: arguments[arguments.index(f"--{name}-prompt") + 1] for name in ("query", "document")}
    assert prompts == PROMPTS and README_FOLDER in arguments  # the folder the tests below run the README's usage on
    assert call_keywords(python_block(README, "langchain"), "HuggingFaceEmbeddings") == {
        "model_name": README_FOLDER,
        "model_kwargs": {"trust_remote_code": True},
        "encode_kwargs": {"prompt_name": "document"},
        "query_encode_kwargs": {"prompt_name": "query"},
    }
    assert call_keywords(python_block(README, "llamaindex"), "HuggingFaceEmbedding") == {
        "model_name": README_FOLDER,
        "trust_remote_code": True,
        "query_instruction": PROMPTS["query"],
        "text_instruction": PROMPTS["document"],
    }


def test_card_sentence_transformers_and_transformers_usage_gives_the_prompted_embeddings(card_case):
    folder, card, name, model = card_case
    (query, documents), _ = reference(model)
    st_usage = run_block(python_block(card, "sentence-transformers"), name, folder)
    assert max_diff(st_usage["queries"][0], query) < 1e-6 and max_diff(st_usage["documents"], documents) < 1e-6
    transformers_usage = run_block(python_block(card, "transformers"), name, folder)
    assert max_diff(transformers_usage["embeddings"][0].detach(), query) < 1e-5


def test_card_langchain_usage_gives_the_prompted_embeddings(card_case):
    langchain = pytest.importorskip(CLIENT_MODULES["langchain"])
    folder, card, name, model = card_case
    (query, documents), (plain_query, plain_documents) = reference(model)
    usage = run_block(python_block(card, "langchain"), name, folder)
    assert max_diff(usage["query"], query) < 1e-6 and max_diff(usage["documents"], documents) < 1e-6
    # without the arguments: no prompt at all
    bare = langchain.HuggingFaceEmbeddings(model_name=str(folder), model_kwargs={"trust_remote_code": True})
    assert max_diff(bare.embed_query(QUERY), plain_query) < 1e-6
    assert max_diff(bare.embed_documents(DOCUMENTS), plain_documents) < 1e-6


def test_card_llamaindex_usage_gives_the_prompted_embeddings(card_case):
    llamaindex = pytest.importorskip(CLIENT_MODULES["llamaindex"])
    folder, card, name, model = card_case
    (query, documents), (plain_query, plain_documents) = reference(model)
    usage = run_block(python_block(card, "llamaindex"), name, folder)
    assert max_diff(usage["query"], query) < 1e-6 and max_diff(usage["documents"], documents) < 1e-6
    # without the arguments: its own (empty) instructions in place of the folder's prompts
    bare = llamaindex.HuggingFaceEmbedding(model_name=str(folder), trust_remote_code=True)
    assert max_diff(bare.get_query_embedding(QUERY), plain_query) < 1e-6
    assert max_diff(bare.get_text_embedding_batch(DOCUMENTS), plain_documents) < 1e-6


@pytest.mark.parametrize("client", ["langchain", "llamaindex"])
def test_readme_client_usage_gives_the_prompted_embeddings(prompted, client):
    pytest.importorskip(CLIENT_MODULES[client])
    folder, _ = prompted
    (query, documents), _ = reference(SentenceTransformer(str(folder), trust_remote_code=True))
    usage = run_block(python_block(README, client), README_FOLDER, folder)
    if client == "langchain":
        got_query = usage["embeddings"].embed_query(QUERY)
        got_documents = usage["embeddings"].embed_documents(DOCUMENTS)
    else:
        got_query = usage["embed_model"].get_query_embedding(QUERY)
        got_documents = usage["embed_model"].get_text_embedding_batch(DOCUMENTS)
    assert max_diff(got_query, query) < 1e-6 and max_diff(got_documents, documents) < 1e-6
