"""A client for any OpenAI-compatible chat-completions endpoint, on the official `openai` package, with a disk cache.

Settings come from arguments or the environment: `OPENAI_BASE_URL` (default https://api.openai.com/v1),
`OPENAI_API_KEY` and `OPENAI_MODEL`. `complete_many(prompts)` sends one user message per prompt, `concurrency` at a
time. `openai` does the rest of the transport: per-request timeouts, and retries of rate limits (429), server errors
(5xx), timeouts and dropped connections with exponential back-off (0.5 s to 8 s, or the server's `Retry-After`).
Other client errors (401, 400, ...) are not retried.

Every successful response is stored in `cache_dir` under the SHA-256 of the request body (model, messages and
sampling settings; never the key or the URL), so a rerun of the same requests is answered from disk: it costs nothing,
and an interrupted run resumes where it stopped. A response whose body is not a chat completion with text content
(not JSON, no choices, null content) is counted as malformed, returned as a failure and not cached.

Token counts come from the responses' `usage`; the cost is computed only when prices are given (USD per million input
and output tokens), because prices change and differ between endpoints.
"""

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

from mamba_retrieval.modeling.data_files import atomic_file

DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass
class Completion:
    """One prompt's outcome: `text` when it succeeded, else `error` (and `malformed` when the body was unusable)."""

    prompt: str
    text: str | None = None
    error: str | None = None
    malformed: bool = False
    cached: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None

    @property
    def ok(self):
        return self.text is not None


@dataclass
class UsageStats:
    """Counts over a client's lifetime; tokens of cached answers are counted apart (they cost nothing)."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    malformed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts):
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self, price_input=None, price_output=None):
        counts = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "lock"}
        counts["cost_usd"] = (
            None
            if price_input is None or price_output is None
            else (self.prompt_tokens * price_input + self.completion_tokens * price_output) / 1e6
        )
        return counts


class LLMError(RuntimeError):
    pass


def parse_chat_completion(body):
    """(text, finish_reason, prompt_tokens, completion_tokens) from a chat-completion body; ValueError if malformed.
    `openai`'s own parsing accepts a body without choices or with null content, which is no answer to cache."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"response is not JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError("response is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("response has no choices")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise ValueError(f"choice has no text content (finish_reason {choices[0].get('finish_reason')!r})")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return (
        content,
        choices[0].get("finish_reason"),
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
    )


class LLMClient:
    """`LLMClient(model=..., cache_dir=...).complete_many(prompts)` -> one `Completion` per prompt, in order."""

    def __init__(
        self,
        model=None,
        base_url=None,
        api_key=None,
        cache_dir=None,
        *,
        concurrency=8,
        timeout=240.0,
        max_retries=5,
        temperature=0.0,
        max_tokens=2000,
        price_input=None,
        price_output=None,
    ):
        import openai  # here, not at the top: `synth --help` and `answer --help` need not wait for it (0.6 s)

        self.model = model or os.environ.get("OPENAI_MODEL")
        if not self.model:
            raise ValueError("No LLM model given: pass --llm-model (or model=) or set OPENAI_MODEL.")
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"The LLM base URL {self.base_url!r} does not start with http:// or https://.")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ValueError("concurrency must be >= 1, max_retries >= 0 and timeout > 0.")
        self.concurrency, self.timeout, self.max_retries = concurrency, timeout, max_retries
        self.temperature, self.max_tokens = temperature, max_tokens
        self.price_input, self.price_output = price_input, price_output
        self.stats = UsageStats()
        self._attempt = threading.local()  # this thread's attempts at its current prompt, and when the last was sent
        self._openai = openai.OpenAI(
            base_url=self.base_url,
            api_key=self.api_key or "none",  # openai refuses to start without one; `_sent` drops it (see there)
            max_retries=max_retries,
            timeout=timeout,
            # openai's default client follows redirects, with the Authorization header, to any origin. A
            # chat-completions endpoint does not redirect: the request fails, and the key goes nowhere else.
            http_client=openai.DefaultHttpxClient(follow_redirects=False, event_hooks={"request": [self._sent]}),
        )

    def with_model(self, model, price_input=None, price_output=None):
        """A client with the same endpoint, settings and cache for another model (its own counts and prices: the
        other model's prices differ, so none are carried over)."""
        return LLMClient(
            model,
            self.base_url,
            self.api_key,
            self.cache_dir,
            concurrency=self.concurrency,
            timeout=self.timeout,
            max_retries=self.max_retries,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            price_input=price_input,
            price_output=price_output,
        )

    def request_body(self, prompt):
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def cache_key(self, body):
        return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()

    def _cache_path(self, key):
        return self.cache_dir / key[:2] / f"{key}.json"

    def _read_cache(self, key):
        if self.cache_dir is None:
            return None
        path = self._cache_path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))["response"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return None

    def _write_cache(self, key, body, response_text):
        if self.cache_dir is None:
            return
        path = self._cache_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as handle:  # a crash never leaves half a cache entry
            handle.write(json.dumps({"request": body, "response": json.loads(response_text)}, ensure_ascii=False))

    def complete(self, prompt):
        """One prompt -> `Completion` (never raises for endpoint errors; they are in `Completion.error`)."""
        if not isinstance(prompt, str) or not prompt:
            raise ValueError("A prompt must be a non-empty string.")
        body = self.request_body(prompt)
        key = self.cache_key(body)
        cached = self._read_cache(key)
        if cached is not None:
            text, finish, prompt_tokens, completion_tokens = parse_chat_completion(json.dumps(cached))
            self.stats.add(cache_hits=1, cached_prompt_tokens=prompt_tokens, cached_completion_tokens=completion_tokens)
            return Completion(
                prompt,
                text,
                cached=True,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                finish_reason=finish,
            )
        try:
            response_text = self._post(body)
        except LLMError as error:
            self.stats.add(failures=1)
            return Completion(prompt, error=str(error))
        try:
            text, finish, prompt_tokens, completion_tokens = parse_chat_completion(response_text)
        except ValueError as error:
            self.stats.add(malformed=1)
            return Completion(prompt, error=f"malformed response: {error}", malformed=True)
        self.stats.add(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        self._write_cache(key, body, response_text)
        return Completion(
            prompt, text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, finish_reason=finish
        )

    def complete_many(self, prompts, progress=None):
        """Completions of `prompts` (in order), `concurrency` requests at a time."""
        prompts = list(prompts)
        results = [None] * len(prompts)
        done = [0]
        lock = threading.Lock()

        def work(index):
            results[index] = self.complete(prompts[index])
            if progress:
                with lock:
                    done[0] += 1
                    progress(done[0], len(prompts))

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            list(pool.map(work, range(len(prompts))))
        return results

    def _sent(self, request):
        """httpx's hook for every request openai sends, retries included (called in the sending thread)."""
        if not self.api_key:  # a local server (vLLM, llama.cpp, Ollama) needs no key: send no Authorization at all
            request.headers.pop("Authorization", None)
        self._attempt.count += 1
        self._attempt.sent_at = time.monotonic()
        self.stats.add(requests=1, retries=int(self._attempt.count > 1))

    def _post(self, body):
        """The raw body of the answer to `body` (raw: a malformed one is reported, not cached); LLMError if none."""
        import openai

        self._attempt.count = 0
        url = f"{self.base_url}/chat/completions"
        try:
            with self._openai.chat.completions.with_streaming_response.create(**body) as response:
                return self._read_body(response, url)
        except openai.APIStatusError as error:
            if error.response.is_redirect:
                raise LLMError(
                    f"{url} answered {error.status_code} with a redirect to {error.response.headers.get('location')}; "
                    "redirects are not followed (the API key would go with them): set --llm-base-url to the address "
                    "that answers."
                ) from None
            detail = error.body.get("message") if isinstance(error.body, dict) else None
            problem = f"HTTP {error.status_code} from {url}: {detail or error.response.reason_phrase}"
        except openai.APITimeoutError:
            problem = f"no answer from {url} within {self.timeout:g} s"
        except openai.APIConnectionError as error:
            problem = f"cannot reach {url}: {error.__cause__ or error}"
        attempts = self._attempt.count
        raise LLMError(problem + (f" (gave up after {attempts} attempts)" if attempts > 1 else ""))

    def _read_body(self, response, url):
        """The body, read here rather than by openai so that the timeout holds for the whole answer: httpx's holds for
        each read, and a server trickling its answer a byte at a time would never time out. openai has retried
        until the headers came; a body that breaks off or comes too slowly is one failure (a rerun asks again)."""
        chunks, deadline = [], self._attempt.sent_at + self.timeout
        try:
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    break
            else:
                return b"".join(chunks).decode("utf-8", errors="replace")
        except Exception as error:  # httpx's read errors (httpx or httpx2, by openai version: no one class to name)
            raise LLMError(f"the answer from {url} broke off ({type(error).__name__}: {error})") from None
        raise LLMError(f"the answer from {url} took longer than {self.timeout:g} s")

    def usage(self):
        return self.stats.as_dict(self.price_input, self.price_output)
