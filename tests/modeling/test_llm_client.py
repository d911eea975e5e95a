"""The LLM client against a real local HTTP server that replays recorded chat-completion exchanges."""

import json
import time

import pytest
from recorded_llm import EXCHANGES, RecordedEndpoint, chat_completion, message_key

from mamba_retrieval.modeling.scanner.llm_client import LLMClient, parse_chat_completion

CLIENT_EXCHANGES = EXCHANGES / "client"


def make_client(endpoint, tmp_path=None, **overrides):
    settings = dict(api_key="sk-test", cache_dir=tmp_path / "cache" if tmp_path else None, max_retries=3, timeout=10)
    return LLMClient("recorded-model", endpoint.base_url, **{**settings, **overrides})


def test_answer_usage_and_request_format(tmp_path):
    with RecordedEndpoint(CLIENT_EXCHANGES) as endpoint:
        client = make_client(endpoint, tmp_path)
        completion = client.complete("What is the capital of France? Answer in one word.")
    assert completion.ok and completion.text == "Paris." and completion.finish_reason == "stop"
    request = endpoint.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["authorization"] == "Bearer sk-test"
    assert request["body"] == {
        "model": "recorded-model",
        "temperature": 0.0,
        "max_tokens": 2000,
        "messages": [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
    }
    usage = client.usage()
    assert (usage["requests"], usage["prompt_tokens"], usage["completion_tokens"]) == (1, 12, 2)
    assert usage["cost_usd"] is None  # no prices given


def test_cost_from_prices(tmp_path):
    with RecordedEndpoint(CLIENT_EXCHANGES) as endpoint:
        client = make_client(endpoint, price_input=2.5, price_output=10.0)
        client.complete("What is the capital of France? Answer in one word.")
    assert client.usage()["cost_usd"] == pytest.approx((12 * 2.5 + 2 * 10.0) / 1e6)


def test_another_model_has_its_own_prices_and_counts(tmp_path):
    with RecordedEndpoint(CLIENT_EXCHANGES) as endpoint:
        client = make_client(endpoint, price_input=2.5, price_output=10.0)
        judge = client.with_model("judge-model", price_input=1.0, price_output=4.0)
        unpriced = client.with_model("other-model")
    assert (judge.model, judge.price_input, judge.price_output) == ("judge-model", 1.0, 4.0)
    assert unpriced.usage()["cost_usd"] is None and judge.stats is not client.stats


def test_rate_limit_and_server_error_are_retried():
    with RecordedEndpoint(CLIENT_EXCHANGES) as endpoint:
        client = make_client(endpoint)
        started = time.monotonic()
        completion = client.complete("Name a prime number between 10 and 15.")
        elapsed = time.monotonic() - started
    assert completion.text == "11"
    assert len(endpoint.requests) == 3 and client.usage()["retries"] == 2
    # each reply asked for 10 ms (retry-after-ms); openai's own back-off would wait at least 0.375 + 0.75 s
    assert elapsed < 1.0, elapsed


def test_retries_run_out():
    with RecordedEndpoint(CLIENT_EXCHANGES) as endpoint:
        client = make_client(endpoint, max_retries=1)
        completion = client.complete("Name a prime number between 10 and 15.")
    assert not completion.ok and "HTTP 503" in completion.error and "2 attempts" in completion.error
    assert client.usage()["failures"] == 1


def test_client_errors_are_not_retried():
    with RecordedEndpoint(CLIENT_EXCHANGES) as endpoint:
        client = make_client(endpoint)
        completion = client.complete("Say hello.")
    assert not completion.ok and not completion.malformed
    assert "HTTP 401" in completion.error and "Incorrect API key" in completion.error
    assert len(endpoint.requests) == 1


def test_timeouts_are_retried_then_reported():
    with RecordedEndpoint(CLIENT_EXCHANGES) as endpoint:
        client = make_client(endpoint, timeout=0.3, max_retries=1)
        completion = client.complete("Count to three.")
    assert not completion.ok and "gave up after 2 attempts" in completion.error
    assert len(endpoint.requests) == 2


@pytest.mark.parametrize(
    "prompt, problem",
    [
        ("Return a JSON object.", "not JSON"),
        ("Write one sentence about rivers.", "no choices"),
        ("Describe the weather.", "no text content"),
    ],
)
def test_malformed_responses_are_counted_not_cached(tmp_path, prompt, problem):
    with RecordedEndpoint(CLIENT_EXCHANGES) as endpoint:
        client = make_client(endpoint, tmp_path)
        completion = client.complete(prompt)
    assert completion.malformed and problem in completion.error
    assert client.usage()["malformed"] == 1 and len(endpoint.requests) == 1  # not retried
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_cache_answers_a_rerun_without_requests(tmp_path):
    prompts = ["What is the capital of France? Answer in one word.", "Name a prime number between 10 and 15."]
    with RecordedEndpoint(CLIENT_EXCHANGES) as endpoint:
        first = make_client(endpoint, tmp_path).complete_many(prompts)
    # The endpoint is gone: a second client with the same cache needs no network.
    second_client = LLMClient("recorded-model", "http://127.0.0.1:9/v1", api_key="", cache_dir=tmp_path / "cache")
    second = second_client.complete_many(prompts)
    assert [c.text for c in second] == [c.text for c in first] == ["Paris.", "11"]
    assert all(c.cached for c in second)
    usage = second_client.usage()
    assert (usage["requests"], usage["cache_hits"], usage["prompt_tokens"]) == (0, 2, 0)
    assert usage["cached_prompt_tokens"] == 12 + 14
    # one file per request, keyed by the request body, holding request and response
    entry = json.loads(next((tmp_path / "cache").rglob("*.json")).read_text())
    assert set(entry) == {"request", "response"} and entry["response"]["object"] == "chat.completion"


def test_cache_key_depends_on_the_request():
    client = LLMClient("m", "http://127.0.0.1:9/v1")
    key = client.cache_key(client.request_body("a"))
    assert key != client.cache_key(client.request_body("b"))
    assert key != LLMClient("other", "http://127.0.0.1:9/v1").cache_key(LLMClient("other").request_body("a"))
    assert key == LLMClient("m", "http://example.invalid/v1").cache_key(client.request_body("a"))


def test_concurrency_is_bounded_and_order_kept():
    prompts = [f"Spell the number {i}." for i in range(6)]
    with RecordedEndpoint(CLIENT_EXCHANGES) as endpoint:
        completions = make_client(endpoint, concurrency=3).complete_many(prompts)
    assert [c.text for c in completions] == [f"number {i}" for i in range(6)]
    assert 2 <= endpoint.max_in_flight <= 3


def test_without_a_key_no_authorization_header_is_sent(monkeypatch):
    """A local server (vLLM, llama.cpp, Ollama) needs no key; openai itself refuses to start without one."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with RecordedEndpoint(CLIENT_EXCHANGES) as endpoint:
        completion = LLMClient("recorded-model", endpoint.base_url).complete(
            "What is the capital of France? Answer in one word."
        )
    assert completion.text == "Paris." and endpoint.requests[0]["authorization"] is None


def test_a_base_url_without_http_is_refused():
    with pytest.raises(ValueError, match="does not start with http"):
        LLMClient("m", "localhost:8000/v1")


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1234/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    client = LLMClient()
    assert (client.model, client.base_url, client.api_key) == ("env-model", "http://127.0.0.1:1234/v1", "sk-env")
    monkeypatch.delenv("OPENAI_MODEL")
    with pytest.raises(ValueError, match="OPENAI_MODEL"):
        LLMClient()


def test_parse_chat_completion_rejects_error_bodies():
    with pytest.raises(ValueError, match="no choices"):
        parse_chat_completion(json.dumps({"error": {"message": "x"}}))


def test_a_redirect_is_refused_and_the_key_goes_nowhere_else(tmp_path):
    """An endpoint answering 302 to another origin: urllib (and openai's default httpx client) followed it with
    `Authorization: Bearer <key>` and cached the answer to that other request as the answer to the prompt."""
    import http.server
    import threading

    seen = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.command, self.headers.get("Authorization")))
            body = json.dumps(chat_completion("an answer to another request")).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    target = f"http://127.0.0.1:{other.server_address[1]}/chat/completions"
    redirect = {"status": 302, "headers": {"Location": target}, "body": {}}
    exchanges = {message_key([{"role": "user", "content": "Q"}]): {"request": {}, "replies": [redirect]}}
    try:
        with RecordedEndpoint(exchanges=exchanges) as endpoint:
            client = LLMClient("m", endpoint.base_url, api_key="sk-secret", cache_dir=tmp_path / "cache", max_retries=0)
            completion = client.complete("Q")
    finally:
        other.shutdown()
    assert seen == [] and not completion.ok and "redirects are not followed" in completion.error
    assert not any((tmp_path / "cache").rglob("*.json"))  # nothing cached for the prompt


def test_the_timeout_is_for_the_whole_answer_not_each_read(tmp_path):
    """A server that trickles its answer a byte at a time held a 3 s timeout for 25 s."""
    import http.server
    import threading

    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps(chat_completion("slow")).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.05)  # a byte every 50 ms: never idle for a socket timeout
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = LLMClient(
        "m", f"http://127.0.0.1:{server.server_address[1]}", api_key="k", cache_dir=tmp_path, timeout=1.0, max_retries=0
    )
    started = time.monotonic()
    completion = client.complete("Q")
    elapsed = time.monotonic() - started
    server.shutdown()
    assert not completion.ok and "took longer than 1 s" in completion.error
    assert elapsed < 3, elapsed  # the whole answer would take about 10 s


def test_an_answer_that_breaks_off_is_a_failure_not_a_crash(tmp_path):
    """The body is read outside openai's retries (for the whole-answer timeout): its read errors are failures too."""
    import http.server
    import threading

    class BreaksOff(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"id": "chatcmpl-')  # then the connection closes

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BreaksOff)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = LLMClient("m", f"http://127.0.0.1:{server.server_address[1]}", api_key="k", cache_dir=tmp_path)
    completions = client.complete_many(["Q"])
    server.shutdown()
    assert not completions[0].ok and "broke off" in completions[0].error
    assert client.usage()["failures"] == 1 and not any(tmp_path.rglob("*.json"))
