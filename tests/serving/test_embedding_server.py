"""The embeddings server, started for real (uvicorn on a free port of 127.0.0.1, in a thread) and asked with the
official `openai` client and raw HTTP (httpx2, the openai client's HTTP library): its embeddings equal
SentenceTransformer's of the same texts with the name's prompt, and every bad request gets a 4xx in OpenAI's error
shape."""

import base64
import concurrent.futures
import json
import threading

import httpx2
import numpy as np
import openai
import pytest
from helpers import PROMPTS, write_tiny_folder
from sentence_transformers import SentenceTransformer
from serving_helpers import running_server

from mamba_retrieval.modeling.pretrained import DEFAULT_MODEL, model_path
from mamba_retrieval.modeling.serving.openai_api import Limits
from mamba_retrieval.modeling.serving.served_model import ServedModel

TEXTS = ["Mamba is a selective state-space model.", "hello", "A longer text " * 7 + "that ends here."]
SMALL = Limits(max_inputs=4, max_tokens_per_input=24, max_request_tokens=60, max_body_bytes=4096)


def client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def shipped():
    served = ServedModel(model_path(), DEFAULT_MODEL)
    with running_server(served) as url:
        yield url, served


@pytest.fixture(scope="module")
def prompted(tmp_path_factory):
    """A tiny random folder whose query and document prompts differ, served with small limits."""
    folder = tmp_path_factory.mktemp("served") / "prompted"
    write_tiny_folder(folder, "mamba")
    served = ServedModel(str(folder), "prompted")
    with running_server(served, limits=SMALL, max_wait=0.02) as url:
        yield url, served, SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")


def vectors(response):
    return np.array([item.embedding for item in response.data], dtype=np.float32)


def test_the_openai_client_gets_the_shipped_models_embeddings(shipped):
    url, served = shipped
    reference = SentenceTransformer(model_path(), trust_remote_code=True, device="cpu").encode(TEXTS)
    api = client(url)
    as_base64 = api.embeddings.create(model=DEFAULT_MODEL, input=TEXTS)  # the client's default: base64
    as_floats = api.embeddings.create(model=DEFAULT_MODEL, input=TEXTS, encoding_format="float")
    one = api.embeddings.create(model=DEFAULT_MODEL, input=TEXTS[1])
    for response in (as_base64, as_floats):
        assert [item.index for item in response.data] == [0, 1, 2] and response.model == DEFAULT_MODEL
        np.testing.assert_allclose(vectors(response), reference, atol=1e-5)
    np.testing.assert_allclose(vectors(one)[0], reference[1], atol=1e-5)
    tokens = sum(len(ids) for ids in served.encoder.tokenizer(TEXTS)["input_ids"])
    assert as_floats.usage.prompt_tokens == as_floats.usage.total_tokens == tokens
    assert [model.id for model in api.models.list()] == [
        DEFAULT_MODEL,
        f"{DEFAULT_MODEL}-query",
        f"{DEFAULT_MODEL}-document",
    ]
    assert httpx2.get(f"{url}/health").json()["status"] == "ok"


def test_the_query_and_document_names_apply_the_folders_prompts(prompted):
    url, served, reference = prompted
    api = client(url)
    for name, encode, prompt in [
        ("prompted", reference.encode, ""),
        ("prompted-query", reference.encode_query, PROMPTS["query"]),
        ("prompted-document", reference.encode_document, PROMPTS["document"]),
    ]:
        response = api.embeddings.create(model=name, input=TEXTS[:2])
        np.testing.assert_allclose(vectors(response), encode(TEXTS[:2]), atol=1e-5)
        tokens = sum(len(ids) for ids in reference.tokenizer([prompt + t for t in TEXTS[:2]])["input_ids"])
        assert response.usage.prompt_tokens == tokens, name
    queries = vectors(api.embeddings.create(model="prompted-query", input=TEXTS[:1]))
    documents = vectors(api.embeddings.create(model="prompted-document", input=TEXTS[:1]))
    assert np.abs(queries - documents).max() > 1e-4  # the prompts tell them apart, 10x beyond the tolerance


def test_dimensions_cut_and_normalise_again_in_both_encodings(prompted):
    url, _, reference = prompted
    full = reference.encode_query(TEXTS[:2])
    cut = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    floats = client(url).embeddings.create(
        model="prompted-query", input=TEXTS[:2], dimensions=8, encoding_format="float"
    )
    np.testing.assert_allclose(vectors(floats), cut, atol=1e-5)
    raw = httpx2.post(
        f"{url}/v1/embeddings",
        json={"model": "prompted-query", "input": TEXTS[:2], "dimensions": 8, "encoding_format": "base64"},
    ).json()
    decoded = np.array([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in raw["data"]])
    np.testing.assert_allclose(decoded, cut, atol=1e-5)


def test_many_clients_at_once_each_get_their_own_embeddings_batched_together(prompted):
    url, served, reference = prompted
    texts = [f"client {i} asks about topic {i * 7}" for i in range(32)]
    expected = reference.encode_document(texts)
    before = served_batches(url)
    api, start = client(url), threading.Barrier(16)

    def ask(i):
        start.wait(10)
        return [vectors(api.embeddings.create(model="prompted-document", input=texts[j]))[0] for j in (i, i + 16)]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(16)))
    for i, (first, second) in enumerate(answers):
        np.testing.assert_allclose(first, expected[i], atol=1e-5)
        np.testing.assert_allclose(second, expected[i + 16], atol=1e-5)
    after = served_batches(url)
    assert after["texts"] - before["texts"] == 32
    assert after["batches"] - before["batches"] < 32  # some requests shared an encode call


def test_a_full_queue_answers_429_with_retry_after_and_the_openai_client_retries_to_success(tmp_path):
    """One text may wait at a time: of 16 clients at once, those beyond it get a 429 with Retry-After in OpenAI's
    shape; the openai client's own retries then bring every answer."""
    folder = tmp_path / "busy"
    write_tiny_folder(folder, "mamba")
    served = ServedModel(str(folder), "busy")
    texts = [f"text number {i}" for i in range(16)]
    expected = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu").encode(texts)
    with running_server(served, limits=Limits(max_queued_texts=1), max_wait=0) as url:
        start = threading.Barrier(16)

        def post(i):
            start.wait(10)
            return httpx2.post(f"{url}/v1/embeddings", json={"model": "busy", "input": texts[i]}, timeout=60)

        refused = []
        for _ in range(5):  # (bounded: a round in which no two requests overlapped is tried again)
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                refused = [r for r in pool.map(post, range(16)) if r.status_code == 429]
            if refused:
                break
        assert refused, "16 requests at once never overlapped"
        error = refused[0].json()["error"]
        assert (
            refused[0].headers["retry-after"] == "1" and error["code"] == "server_busy" and "busy" in error["message"]
        )

        api = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=20, timeout=60)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(lambda i: vectors(api.embeddings.create(model="busy", input=texts[i]))[0], range(16))
            )
        np.testing.assert_allclose(np.stack(answers), expected, atol=1e-5)


def served_batches(url):
    return httpx2.get(f"{url}/health").json()


LONG = "word " * 40  # 42 tokens with the end-of-text token: over SMALL's 24 per input


@pytest.mark.parametrize(
    "body, status, param, says",
    [
        (b"{not json", 400, None, "not valid JSON"),
        (b"[1, 2]", 400, None, "JSON list"),
        (b"\xff\xfe", 400, None, "not valid JSON"),
        ({"input": "a"}, 400, "model", "Give `model`"),
        ({"model": 5, "input": "a"}, 400, "model", "Give `model`"),
        ({"model": "other", "input": "a"}, 404, "model", "not served here"),
        ({"model": "../../etc/passwd", "input": "a"}, 404, "model", "not served here"),
        ({"model": "prompted"}, 400, "input", "non-empty string"),
        ({"model": "prompted", "input": ""}, 400, "input", "input[0] is an empty string"),
        ({"model": "prompted", "input": []}, 400, "input", "non-empty string"),
        ({"model": "prompted", "input": ["a", ""]}, 400, "input", "input[1] is an empty string"),
        ({"model": "prompted", "input": None}, 400, "input", "non-empty string"),
        ({"model": "prompted", "input": 5}, 400, "input", "non-empty string"),
        ({"model": "prompted", "input": {"text": "a"}}, 400, "input", "non-empty string"),
        ({"model": "prompted", "input": ["a", 3.5]}, 400, "input", "input[1] is a float"),
        ({"model": "prompted", "input": [1, 2, 3]}, 400, "input", "token ids"),
        ({"model": "prompted", "input": [[1, 2], [3]]}, 400, "input", "token ids"),
        ({"model": "prompted", "input": ["a"] * 5}, 400, "input", "at most 4 per request"),
        ({"model": "prompted", "input": LONG}, 400, "input", "input[0] has 42 tokens"),
        ({"model": "prompted", "input": ["word " * 15] * 4}, 400, "input", "at most 60 per request"),
        ({"model": "prompted", "input": "a", "encoding_format": "int8"}, 400, "encoding_format", "not one of"),
        ({"model": "prompted", "input": "a", "dimensions": 0}, 400, "dimensions", "from 1 to 32"),
        ({"model": "prompted", "input": "a", "dimensions": 33}, 400, "dimensions", "from 1 to 32"),
        ({"model": "prompted", "input": "a", "dimensions": "8"}, 400, "dimensions", "from 1 to 32"),
        ({"model": "prompted", "input": "a", "dimensions": True}, 400, "dimensions", "from 1 to 32"),
        ({"model": "prompted", "input": "a", "user": 7}, 400, "user", "user must be a string"),
        ({"model": "prompted", "input": "a", "input_type": "query"}, 400, "input_type", "Unrecognized"),
        ({"model": "prompted", "input": "x" * 5000}, 413, None, "over 4096 bytes"),
    ],
)
def test_every_bad_request_gets_a_4xx_in_openais_error_shape(prompted, body, status, param, says):
    url = prompted[0]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx2.post(f"{url}/v1/embeddings", content=content, headers={"content-type": "application/json"})
    error = response.json()["error"]
    assert response.status_code == status and set(error) == {"message", "type", "param", "code"}, response.text
    assert says in error["message"] and error["param"] == param and error["type"] == "invalid_request_error"


def test_an_input_too_long_to_fit_is_refused_without_tokenizing_it(prompted):
    """A text of more characters than the limit's tokens can hold (each token is at most 512 characters here) is
    counted by that bound, not tokenized: a hostile 3 MB input costs no tokenizer time."""
    url, served, _ = prompted
    counts = served.count_tokens(["y" * 3_000_000, "short"], None, limit=24)
    assert counts[0] == -(-3_000_000 // 512) and counts[1] == len(served.encoder.tokenizer("short")["input_ids"])


def test_paths_methods_and_model_lookups_answer_in_openais_shape(prompted):
    url = prompted[0]
    for method, path, status in [
        ("GET", "/v1/embeddings", 405),
        ("GET", "/v1/nothing", 404),
        ("GET", "/v1/models/..%2F..%2Fetc%2Fpasswd", 404),
        ("GET", "/v1/models/other", 404),
    ]:
        response = httpx2.request(method, url + path)
        assert response.status_code == status and set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx2.get(f"{url}/v1/models/prompted-query").json()["id"] == "prompted-query"
    api = client(url)
    with pytest.raises(openai.NotFoundError, match="not served here"):
        api.models.retrieve("other")
    with pytest.raises(openai.BadRequestError, match="input\\[0\\] is an empty string"):
        api.embeddings.create(model="prompted", input=[""])


def test_llamaindex_and_langchain_openai_classes_get_the_prompted_embeddings(prompted):
    """Their OpenAI embedding classes, pointed at the server: one instance per served name (each sends one model
    name). LangChain needs check_embedding_ctx_length=False, or it sends tiktoken's token ids (refused here: they are
    not this model's tokens) after downloading tiktoken's tables."""
    llamaindex = pytest.importorskip("llama_index.embeddings.openai")
    langchain = pytest.importorskip("langchain_openai")
    url, _, reference = prompted
    queries = llamaindex.OpenAIEmbedding(model_name="prompted-query", api_base=f"{url}/v1", api_key="unused")
    np.testing.assert_allclose(queries.get_query_embedding(TEXTS[0]), reference.encode_query(TEXTS[0]), atol=1e-5)
    documents = langchain.OpenAIEmbeddings(
        model="prompted-document", base_url=f"{url}/v1", api_key="unused", check_embedding_ctx_length=False
    )
    np.testing.assert_allclose(documents.embed_documents(TEXTS[:2]), reference.encode_document(TEXTS[:2]), atol=1e-5)


def test_stopping_answers_the_request_in_flight_first(prompted):
    """What SIGINT/SIGTERM do in uvicorn (should_exit), while a request is being encoded: it is answered, then the
    batcher stops. (A second server of the prompted folder's encoder, whose own server is idle meanwhile.)"""
    served = ServedModel(None, "model", encoder=prompted[1].encoder)
    entered, release, encode = threading.Event(), threading.Event(), served.encode

    def held_encode(*args):
        entered.set()
        assert release.wait(30)
        return encode(*args)

    served.encode = held_encode
    answers = []
    with running_server(served) as url:
        asking = threading.Thread(
            target=lambda: answers.append(httpx2.post(f"{url}/v1/embeddings", json={"model": "model", "input": "hi"}))
        )
        asking.start()
        assert entered.wait(30)
        threading.Timer(0.2, release.set).start()  # the stop below begins while the request is being encoded
    asking.join(30)
    assert answers and answers[0].status_code == 200 and len(answers[0].json()["data"]) == 1
