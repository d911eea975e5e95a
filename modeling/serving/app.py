"""The HTTP server: FastAPI routes on uvicorn, OpenAI-compatible.

- `POST /v1/embeddings`: OpenAI's embeddings request (openai_api.py); the texts go to the batcher's worker thread,
  the handler awaits their rows, so the event loop never runs the model;
- `GET /v1/models` and `GET /v1/models/{name}`: the served names (served_model.py);
- `GET /health`: `{"status": "ok"}` and the batcher's counts (encode calls, texts encoded, seconds encoding).

Every error, the routes' own and the framework's (unknown path, wrong method), is answered in OpenAI's shape.
"""

import asyncio
import contextlib
import logging
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from mamba_retrieval.modeling.serving.batcher import Batcher, Busy
from mamba_retrieval.modeling.serving.openai_api import (
    ApiError,
    Limits,
    check_token_counts,
    embedding_response,
    parse_embedding_request,
)

INLINE_CHARACTERS = 4096  # a request body this short is handled on the event loop (tens of microseconds)
RETRY_AFTER_SECONDS = 1  # what a 429 asks the client to wait (the openai client honours Retry-After and retries)
logger = logging.getLogger(__name__)


def _error_response(error):
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if error.status == 429 else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def create_app(served, limits=None, max_batch=32, max_wait=0.005):
    """The FastAPI app serving `served` (a ServedModel) within `limits` (Limits(): OpenAI's); its batcher runs while
    the app does (the lifespan)."""
    limits = limits or Limits()
    batcher = Batcher(served.encode, max_batch=max_batch, max_wait=max_wait, max_queued=limits.max_queued_texts)
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:
            await asyncio.to_thread(batcher.close)

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)  # the API is OpenAI's

    @app.exception_handler(ApiError)
    async def api_error(request, error):
        return _error_response(error)

    @app.exception_handler(HTTPException)
    async def http_error(request, error):
        return _error_response(ApiError(error.status_code, f"{request.method} {request.url.path}: {error.detail}"))

    @app.exception_handler(Exception)
    async def server_error(request, error):  # the details (paths, the model's internals) go to the log, not the client
        logger.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return _error_response(
            ApiError(500, "The server failed on this request; its log says why.", kind="server_error")
        )

    def model_card(name):
        return {"id": name, "object": "model", "created": created, "owned_by": "mamba-retrieval"}

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "batches": batcher.batches,
            "texts": batcher.texts,
            "encode_seconds": round(batcher.encode_seconds, 3),
        }

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_card(name) for name in served.names]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str):
        if name not in served.names:
            served_names = ", ".join(served.names)
            message = f"The model `{name}` is not served here; served: {served_names}."
            raise ApiError(404, message, param="model", code="model_not_found")
        return model_card(name)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        body = await _read_body(request, limits.max_body_bytes)
        inline = len(body) <= INLINE_CHARACTERS  # a large body is parsed, counted and answered off the event loop

        async def run(function, *arguments):
            return function(*arguments) if inline else await asyncio.to_thread(function, *arguments)

        parsed = await run(parse_embedding_request, body, served.names, served.dimension, limits)
        kind = served.names[parsed.model]
        if inline:
            counts = served.count_tokens(parsed.texts, kind, limits.max_tokens_per_input, on_event_loop=True)
        else:
            counts = await asyncio.to_thread(served.count_tokens, parsed.texts, kind, limits.max_tokens_per_input)
        check_token_counts(counts, limits)
        try:
            future = batcher.submit(kind, parsed.texts)
        except Busy as busy:
            message = f"The server is busy ({busy}); retry in {RETRY_AFTER_SECONDS} s."
            raise ApiError(429, message, code="server_busy", kind="rate_limit_error") from None
        rows = await asyncio.wrap_future(future)
        content = await run(embedding_response, rows, parsed, sum(counts))
        return Response(content, media_type="application/json")

    return app


async def _read_body(request, limit):
    too_large = ApiError(413, f"The request body is over {limit} bytes; send fewer or shorter inputs per request.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def serve(served, sock, limits=None, max_batch=32, max_wait=0.005, access_log=False):
    """Serve on `sock` (a bound socket) until SIGINT or SIGTERM: then the requests in flight are answered, the
    batcher stops, and uvicorn raises the signal again (KeyboardInterrupt for SIGINT)."""
    config = uvicorn.Config(
        create_app(served, limits, max_batch, max_wait), access_log=access_log, log_level="info", lifespan="on"
    )
    uvicorn.Server(config).run(sockets=[sock])
