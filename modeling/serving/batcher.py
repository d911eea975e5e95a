"""Requests from many clients encoded together, by one worker thread that owns the model.

The asyncio handlers never run the model: they submit their texts and await a future. The worker takes the first
waiting request, gathers the requests that arrive within `max_wait` seconds (or until `max_batch` texts are held),
encodes them in one call per kind (plain, query, document), and hands each request its rows. Under load the
gathering costs nothing: requests queue while a batch is encoded, and the next batch takes them at once.
`max_batch=1` turns batching off: each request is encoded on its own. At most `max_queued` texts wait at once
(a request into an empty queue is always taken): beyond that `submit` raises `Busy`, which the server answers with a
429, so a flood of requests gets told to retry instead of queueing without bound in the server's memory.
"""

import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    kind: str | None
    texts: list
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class Busy(Exception):
    """More texts are waiting than the batcher takes: the caller should retry later."""


class Batcher:
    """`encode(kind, texts, batch_size)` -> one row per text, run by one worker thread between `start` and `close`."""

    def __init__(self, encode, max_batch=32, max_wait=0.005, max_queued=8192):
        if max_batch < 1 or max_wait < 0 or max_queued < 1:
            raise ValueError(
                f"max_batch and max_queued must be >= 1 and max_wait >= 0, not {max_batch}, {max_queued}, {max_wait}."
            )
        self._encode, self.max_batch, self.max_wait, self.max_queued = encode, max_batch, max_wait, max_queued
        self._queue = queue.SimpleQueue()
        self._queued_lock, self.queued = threading.Lock(), 0  # texts submitted and not yet answered
        self._thread = None
        self.batches = 0  # encode calls, the texts in them and the seconds they took, for /health and the benchmark
        self.texts = 0
        self.encode_seconds = 0.0

    def start(self):
        self._thread = threading.Thread(target=self._run, name="embedding-batcher", daemon=True)
        self._thread.start()

    def close(self):
        """Encode what is queued, then stop the worker; a request submitted after that gets an error."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError("the server is shutting down"))

    def submit(self, kind, texts):
        """A concurrent.futures.Future of the rows of `texts` (asyncio: `await asyncio.wrap_future(...)`)."""
        if self._thread is None:
            raise RuntimeError("the batcher is not running")
        job = _Job(kind, list(texts))
        with self._queued_lock:
            if self.queued and self.queued + len(job.texts) > self.max_queued:
                raise Busy(f"{self.queued} texts are waiting to be encoded (at most {self.max_queued})")
            self.queued += len(job.texts)
        job.future.add_done_callback(lambda _: self._answered(len(job.texts)))
        self._queue.put(job)
        return job.future

    def _answered(self, count):
        with self._queued_lock:
            self.queued -= count

    def _run(self):
        carried = None
        while True:
            job = carried or self._queue.get()
            carried = None
            if job is None:
                return
            jobs, held, stop = [job], len(job.texts), False
            deadline = time.monotonic() + self.max_wait
            while held < self.max_batch:
                try:
                    # what is already queued is taken without waiting; then wait until the deadline
                    following = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if following is None:
                    stop = True
                    break
                if held + len(following.texts) > self.max_batch:
                    carried = following  # a request is never split: it starts the next batch
                    break
                jobs.append(following)
                held += len(following.texts)
            self._encode_jobs(jobs)
            if stop:
                return

    def _encode_jobs(self, jobs):
        jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]  # a gone client's texts are skipped
        for kind in dict.fromkeys(job.kind for job in jobs):
            group = [job for job in jobs if job.kind == kind]
            texts = [text for job in group for text in job.texts]
            started = time.perf_counter()
            try:
                rows = np.asarray(self._encode(kind, texts, self.max_batch))
            except Exception as error:  # noqa: BLE001 - every waiting request gets the error, the worker goes on
                logger.exception("encoding a batch of %d texts failed", len(texts))
                for job in group:
                    job.future.set_exception(error)
                continue
            self.batches += 1
            self.texts += len(texts)
            self.encode_seconds += time.perf_counter() - started
            start = 0
            for job in group:
                job.future.set_result(rows[start : start + len(job.texts)])
                start += len(job.texts)
