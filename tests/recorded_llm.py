"""A local OpenAI-compatible chat-completions server that answers from recorded exchanges (tests only).

An exchange file (tests/data/llm_exchanges/**.json) holds the request a client sends and the replies the endpoint gave,
in the endpoint's own format:

    {"request": {"model": ..., "messages": [...], ...},
     "replies": [{"status": 200, "body": {...chat.completion...}},          # JSON body
                 {"status": 200, "body_text": "not JSON"},                  # a raw body
                 {"status": 429, "headers": {"retry-after-ms": "10"}, "body": {"error": {...}}, "delay": 0.5}]}

The n-th request with the same messages gets the n-th reply (the last one repeats), so retries can be recorded. A
request with no recorded exchange gets a 404 in the API's error format and is kept in `unmatched`, so a test can
show which prompt was not as recorded.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

EXCHANGES = Path(__file__).resolve().parent / "data" / "llm_exchanges"


def load_exchanges(*folders):
    exchanges = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*.json")):
            exchange = json.loads(path.read_text(encoding="utf-8"))
            exchanges[message_key(exchange["request"]["messages"])] = exchange
    return exchanges


def message_key(messages):
    return json.dumps(messages, sort_keys=True, ensure_ascii=False)


class RecordedEndpoint:
    """`with RecordedEndpoint(folder) as endpoint:` -> `endpoint.base_url` (http://127.0.0.1:PORT/v1)."""

    def __init__(self, *folders, exchanges=None):
        self.exchanges = dict(exchanges or {})
        self.exchanges.update(load_exchanges(*folders))
        self.requests, self.unmatched, self.in_flight, self.max_in_flight = [], [], 0, 0
        self.seen = {}
        self.lock = threading.Lock()

    def __enter__(self):
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint.lock:
                    endpoint.requests.append(
                        {"path": self.path, "body": body, "authorization": self.headers.get("Authorization")}
                    )
                    endpoint.in_flight += 1
                    endpoint.max_in_flight = max(endpoint.max_in_flight, endpoint.in_flight)
                    key = message_key(body.get("messages"))
                    count = endpoint.seen[key] = endpoint.seen.get(key, -1) + 1
                try:
                    exchange = endpoint.exchanges.get(key) if self.path == "/v1/chat/completions" else None
                    if exchange is None:
                        endpoint.unmatched.append(body)
                        reply = {
                            "status": 404,
                            "body": {
                                "error": {
                                    "message": "no recorded response for this request",
                                    "type": "invalid_request_error",
                                    "param": None,
                                    "code": "not_recorded",
                                }
                            },
                        }
                    else:
                        reply = exchange["replies"][min(count, len(exchange["replies"]) - 1)]
                    time.sleep(reply.get("delay", 0))
                    payload = (reply["body_text"] if "body_text" in reply else json.dumps(reply["body"])).encode()
                    self.send_response(reply["status"])
                    self.send_header("Content-Type", "application/json")
                    for name, value in reply.get("headers", {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)
                finally:
                    with endpoint.lock:
                        endpoint.in_flight -= 1

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def chat_completion(content, model="recorded-model", prompt_tokens=100, completion_tokens=20, finish_reason="stop"):
    """A chat.completion body as OpenAI's API returns it."""
    return {
        "id": "chatcmpl-recorded",
        "object": "chat.completion",
        "created": 1732000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "fp_recorded",
    }
