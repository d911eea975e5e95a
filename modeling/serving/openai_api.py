"""The OpenAI embeddings API's wire format: the request checked field by field, the response, and errors in OpenAI's
shape, `{"error": {"message", "type", "param", "code"}}`.

What OpenAI refuses is refused here too, with a 4xx and a message that says what to change: an empty text, a token
array (this server reads text; its tokenizer is not OpenAI's), more inputs or tokens than the limits (OpenAI refuses
rather than truncates), an unknown field. OpenAI's own limits are the defaults: 2,048 inputs, 8,192 tokens per input,
300,000 tokens per request.
"""

import base64
import json
from dataclasses import dataclass

import numpy as np

FIELDS = ("input", "model", "encoding_format", "dimensions", "user")
ENCODINGS = ("float", "base64")


class ApiError(Exception):
    """A request the server refuses: the HTTP status and OpenAI's error object."""

    def __init__(self, status, message, param=None, code=None, kind="invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self):
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Limits:
    max_inputs: int = 2048
    max_tokens_per_input: int = 8192
    max_request_tokens: int = 300_000
    max_body_bytes: int = 64 * 2**20  # a body is read whole: this bounds what one request can make the server hold
    max_queued_texts: int = 8192  # texts waiting for the model, all requests: beyond this a request gets a 429


@dataclass(frozen=True)
class EmbeddingRequest:
    texts: list
    model: str
    encoding_format: str
    dimensions: int | None


def parse_embedding_request(body, served_names, dimension, limits):
    """`body` (bytes) -> EmbeddingRequest, or ApiError naming the field at fault. `served_names`: the model names
    served; `dimension`: the model's embedding size, the most `dimensions` may ask for; `limits`: Limits."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, f"The request body is not valid JSON ({error}); send a JSON object.") from None
    if not isinstance(request, dict):
        raise ApiError(400, f"The request body is a JSON {type(request).__name__}; send a JSON object.")
    for name in request:
        if name not in FIELDS:
            raise ApiError(
                400, f"Unrecognized request argument supplied: {name} (accepted: {', '.join(FIELDS)}).", param=name
            )

    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "Give `model` as a string: one of " + ", ".join(served_names) + ".", param="model")
    if model not in served_names:
        raise ApiError(
            404,
            f"The model `{model}` is not served here; served: {', '.join(served_names)}.",
            param="model",
            code="model_not_found",
        )

    texts = request.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts:
        raise ApiError(400, "Give `input` as a non-empty string or a non-empty list of strings.", param="input")
    if len(texts) > limits.max_inputs:
        raise ApiError(
            400,
            f"input holds {len(texts)} texts; this server takes at most {limits.max_inputs} per request. Send them in "
            "several requests.",
            param="input",
        )
    for position, text in enumerate(texts):
        if isinstance(text, (int, list)) and not isinstance(text, bool):
            raise ApiError(
                400,
                "`input` holds token ids; this server takes text only (its tokenizer is not OpenAI's). "
                "LangChain: OpenAIEmbeddings(..., check_embedding_ctx_length=False) sends text.",
                param="input",
            )
        if not isinstance(text, str):
            raise ApiError(400, f"input[{position}] is a {type(text).__name__}; every input must be a string.", "input")
        if not text:
            raise ApiError(400, f"input[{position}] is an empty string; every input needs some text.", param="input")

    encoding_format = request.get("encoding_format", "float")
    if encoding_format not in ENCODINGS:
        raise ApiError(
            400, f"encoding_format {encoding_format!r} is not one of {', '.join(ENCODINGS)}.", param="encoding_format"
        )

    dimensions = request.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= dimension
    ):
        raise ApiError(
            400, f"dimensions {dimensions!r} must be a whole number from 1 to {dimension}.", param="dimensions"
        )
    user = request.get("user")
    if user is not None and not isinstance(user, str):
        raise ApiError(400, "user must be a string.", param="user")
    return EmbeddingRequest(texts, model, encoding_format, dimensions)


def check_token_counts(counts, limits):
    """ApiError for the first input over the per-input limit, or a request over the per-request limit."""
    for position, count in enumerate(counts):
        if count > limits.max_tokens_per_input:
            raise ApiError(
                400,
                f"input[{position}] has {count} tokens (prompt and end-of-text token included); this server takes at "
                f"most {limits.max_tokens_per_input} per input. Shorten or split it.",
                param="input",
                code="context_length_exceeded",
            )
    if sum(counts) > limits.max_request_tokens:
        raise ApiError(
            400,
            f"The inputs hold {sum(counts)} tokens together; this server takes at most {limits.max_request_tokens} "
            "per request. Send them in several requests.",
            param="input",
            code="context_length_exceeded",
        )


def embedding_response(rows, request, token_count):
    """The response body (bytes) for `rows` (float32, one per input): cut to `dimensions` and normalised again when
    asked; base64 is the little-endian float32 bytes, as OpenAI sends them."""
    rows = np.asarray(rows, dtype=np.float32)
    if request.dimensions is not None and request.dimensions < rows.shape[1]:
        rows = rows[:, : request.dimensions]
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        rows = rows / np.where(norms > 0, norms, 1)
    if request.encoding_format == "base64":
        vectors = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in rows]
    else:
        vectors = [row.tolist() for row in rows]
    data = [{"object": "embedding", "index": i, "embedding": vector} for i, vector in enumerate(vectors)]
    usage = {"prompt_tokens": token_count, "total_tokens": token_count}
    return json.dumps({"object": "list", "data": data, "model": request.model, "usage": usage}).encode()
