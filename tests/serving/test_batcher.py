"""The batcher: waiting requests are encoded together, each gets its own rows, a request is never split, a gone
client's texts are skipped, an error reaches every request of its batch, and close() answers what is queued.

The encode function here is a plain function of the texts (each row: the text's length and a hash), so the rows a
request gets show whose texts they are; the worker is held in its first call by an Event, so what queues meanwhile
is known exactly."""

import threading
import zlib

import numpy as np
import pytest

from mamba_retrieval.modeling.serving.batcher import Batcher, Busy


class Recorder:
    def __init__(self, hold_first=True, fail_on=None):
        self.calls, self.release = [], threading.Event()
        self.entered = threading.Event()
        self.fail_on = fail_on
        if not hold_first:
            self.release.set()

    def __call__(self, kind, texts, batch_size):
        self.calls.append((kind, list(texts)))
        self.entered.set()
        assert self.release.wait(10)
        if self.fail_on in texts:
            raise RuntimeError(f"cannot encode {self.fail_on}")
        return np.array([[len(t), zlib.crc32(f"{kind}:{t}".encode())] for t in texts], dtype=np.float64)


def expected(kind, texts):
    return [[len(t), zlib.crc32(f"{kind}:{t}".encode())] for t in texts]


@pytest.fixture
def started():
    batchers = []

    def start(encode, **options):
        batcher = Batcher(encode, **options)
        batcher.start()
        batchers.append(batcher)
        return batcher

    yield start
    for batcher in batchers:
        batcher.close()


def test_requests_waiting_during_a_batch_are_encoded_together_each_getting_its_rows(started):
    encode = Recorder()
    batcher = started(encode, max_batch=32, max_wait=0)
    first = batcher.submit("query", ["first"])
    assert encode.entered.wait(10)
    waiting = [batcher.submit("query", [f"text {i}", f"more {i}"]) for i in range(5)]
    encode.release.set()
    assert first.result(10).tolist() == expected("query", ["first"])
    for i, future in enumerate(waiting):
        assert future.result(10).tolist() == expected("query", [f"text {i}", f"more {i}"])
    assert [len(texts) for _, texts in encode.calls] == [1, 10]
    assert (batcher.batches, batcher.texts) == (2, 11)


def test_kinds_are_encoded_apart_and_a_request_is_never_split(started):
    encode = Recorder()
    batcher = started(encode, max_batch=4, max_wait=0)
    batcher.submit(None, ["hold"])
    assert encode.entered.wait(10)
    futures = [
        batcher.submit("query", ["q1", "q2"]),
        batcher.submit("document", ["d1"]),
        batcher.submit("query", ["q3", "q4"]),  # 2 + 1 + 2 > 4: starts the next batch whole
        batcher.submit("document", ["d2", "d3", "d4", "d5", "d6"]),  # over max_batch alone: encoded alone
    ]
    encode.release.set()
    results = [future.result(10).tolist() for future in futures]
    assert results[0] == expected("query", ["q1", "q2"]) and results[1] == expected("document", ["d1"])
    assert results[2] == expected("query", ["q3", "q4"])
    assert results[3] == expected("document", ["d2", "d3", "d4", "d5", "d6"])
    assert encode.calls[1:] == [
        ("query", ["q1", "q2"]),
        ("document", ["d1"]),
        ("query", ["q3", "q4"]),
        ("document", ["d2", "d3", "d4", "d5", "d6"]),
    ]


def test_max_batch_one_encodes_each_request_alone(started):
    encode = Recorder()
    batcher = started(encode, max_batch=1, max_wait=1.0)
    futures = [batcher.submit(None, [f"t{i}"]) for i in range(4)]
    encode.release.set()
    assert [f.result(10).tolist() for f in futures] == [expected(None, [f"t{i}"]) for i in range(4)]
    assert [texts for _, texts in encode.calls] == [["t0"], ["t1"], ["t2"], ["t3"]]


def test_a_cancelled_request_is_skipped_and_an_error_reaches_its_whole_batch_only(started):
    encode = Recorder(fail_on="bad")
    batcher = started(encode, max_batch=32, max_wait=0)
    batcher.submit(None, ["hold"])
    assert encode.entered.wait(10)
    gone = batcher.submit(None, ["gone"])
    assert gone.cancel()
    failing = [batcher.submit("query", ["bad"]), batcher.submit("query", ["fine"])]
    other_kind = batcher.submit("document", ["unaffected"])
    encode.release.set()
    for future in failing:
        with pytest.raises(RuntimeError, match="cannot encode bad"):
            future.result(10)
    assert other_kind.result(10).tolist() == expected("document", ["unaffected"])
    assert all("gone" not in texts for _, texts in encode.calls)
    assert batcher.submit(None, ["after"]).result(10).tolist() == expected(None, ["after"])  # the worker goes on


def test_close_answers_what_is_queued_and_a_later_submit_is_refused():
    encode = Recorder()
    batcher = Batcher(encode, max_batch=2, max_wait=0)
    batcher.start()
    futures = [batcher.submit(None, [f"t{i}"]) for i in range(5)]
    encode.release.set()
    batcher.close()
    assert [f.result(0).tolist() for f in futures] == [expected(None, [f"t{i}"]) for i in range(5)]
    with pytest.raises(RuntimeError, match="not running"):
        batcher.submit(None, ["late"])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch and max_queued must be >= 1"):
        Batcher(Recorder(), max_batch=0)
    with pytest.raises(ValueError, match="not 32, 0, 0.005"):
        Batcher(Recorder(), max_queued=0)


def test_a_request_beyond_the_queue_limit_is_refused_and_the_queue_frees_as_answers_go(started):
    encode = Recorder()
    batcher = started(encode, max_batch=4, max_wait=0, max_queued=3)
    first = batcher.submit("query", ["a", "b"])  # an empty queue takes a request of any size
    assert encode.entered.wait(10)
    second = batcher.submit(None, ["c"])
    with pytest.raises(Busy, match="3 texts are waiting"):
        batcher.submit(None, ["d"])
    encode.release.set()
    first.result(10), second.result(10)
    assert batcher.queued == 0
    assert batcher.submit(None, ["d", "e", "f", "g"]).result(10).tolist() == expected(None, ["d", "e", "f", "g"])
