"""`mamba-retrieval serve MODEL`: an OpenAI-compatible embeddings server (modeling/serving)."""

import argparse
import socket
import sys
from pathlib import Path

from mamba_retrieval.modeling.cli.arguments import non_negative_float, non_negative_int, positive_int

DEFAULT_TOKENS_PER_INPUT = 8192  # OpenAI's limit; a model that reads fewer tokens lowers it


def port_number(text):
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is no port: ports go from 0 to 65535")
    return value


def register(subparsers):
    parser = subparsers.add_parser(
        "serve",
        help="serve a retriever over HTTP: an OpenAI-compatible embeddings API",
        description="Serve MODEL's embeddings over HTTP, as OpenAI's API does: POST /v1/embeddings, GET /v1/models, "
        "GET /health. The model is served as NAME (plain encode), NAME-query and NAME-document (the folder's query "
        "and document prompts). Requests from many clients are encoded together. Runs until Ctrl-C or SIGTERM, "
        "which answer the requests in flight first.",
    )
    parser.add_argument(
        "model", help="retriever: a Hub folder, a sentence-transformers model or Hub id, a shipped model's name"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on. The default answers this machine only; 0.0.0.0 answers anyone who can reach "
        "this machine on the network: the server has no authentication (it ignores API keys)",
    )
    parser.add_argument("--port", type=port_number, default=8000, help="port to listen on (0: any free port)")
    parser.add_argument("--served-name", help="the model's name in requests (default: the folder's name)")
    parser.add_argument(
        "--max-batch",
        type=positive_int,
        default=32,
        help="most texts encoded at once, gathered from waiting requests; 1 turns batching off",
    )
    parser.add_argument(
        "--max-wait-ms",
        type=non_negative_float,
        default=5.0,
        help="how long a batch waits for more requests after the first one arrives, in milliseconds",
    )
    parser.add_argument("--max-inputs", type=positive_int, default=2048, help="most inputs in one request")
    parser.add_argument(
        "--max-tokens-per-input",
        type=positive_int,
        help=f"most tokens in one input, prompt and end-of-text token included; longer inputs are refused, not "
        f"truncated (default: {DEFAULT_TOKENS_PER_INPUT}, or the model's maximum length when that is less)",
    )
    parser.add_argument(
        "--max-request-tokens", type=positive_int, default=300_000, help="most tokens in one request, all inputs"
    )
    parser.add_argument(
        "--max-queued",
        type=positive_int,
        default=8192,
        help="most texts waiting for the model, all requests together; a request beyond it is answered 429 with "
        "Retry-After (a request into an empty queue is always taken)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (uvicorn's access log)")
    parser.set_defaults(func=run)


def listening_socket(host, port):
    """The bound socket the server will listen on, before the model loads: a taken port fails at once."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as error:
        raise ValueError(f"--host {host}: not an address of this machine ({error.strerror}).") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ValueError(
            f"cannot listen on {host}:{port} ({error.strerror}); pick another --port, or stop what uses it."
        ) from None
    return sock


def run(args):
    from mamba_retrieval.modeling.pretrained import locate_model

    model = locate_model(args.model, option="MODEL")
    with listening_socket(args.host, args.port) as sock:  # closed again whatever happens next
        from mamba_retrieval.modeling.serving.app import serve
        from mamba_retrieval.modeling.serving.openai_api import Limits
        from mamba_retrieval.modeling.serving.served_model import ServedModel

        name = args.served_name or (Path(model).name if Path(model).is_dir() else model)
        served = ServedModel(model, name)
        longest = served.max_seq_length or DEFAULT_TOKENS_PER_INPUT  # (a model may set no limit)
        tokens_per_input = args.max_tokens_per_input or min(DEFAULT_TOKENS_PER_INPUT, longest)
        if served.max_seq_length and tokens_per_input > served.max_seq_length:
            raise ValueError(
                f"--max-tokens-per-input {tokens_per_input}: {name} reads at most {served.max_seq_length} tokens; "
                "longer inputs would be cut, and this server refuses rather than cuts."
            )
        limits = Limits(args.max_inputs, tokens_per_input, args.max_request_tokens, max_queued_texts=args.max_queued)
        host, port = sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        print(
            f"serving {', '.join(served.names)} at http://{host}:{port}/v1 (POST /v1/embeddings, GET /v1/models, "
            f"GET /health); batches of up to {args.max_batch} texts; Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        try:
            serve(served, sock, limits, args.max_batch, args.max_wait_ms / 1000, args.access_log)
        except KeyboardInterrupt:  # uvicorn raises Ctrl-C's signal again once it has shut down cleanly
            print("stopped (Ctrl-C)", file=sys.stderr)
            return 130
