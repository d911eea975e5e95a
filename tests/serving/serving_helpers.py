"""The embeddings server for tests: the real app on uvicorn, in a thread, on a free port of 127.0.0.1."""

import contextlib
import socket
import threading
import time

import uvicorn

from mamba_retrieval.modeling.serving.app import create_app


@contextlib.contextmanager
def running_server(served, **options):
    """The app on uvicorn in a thread, listening on a free port of 127.0.0.1; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(served, **options), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
