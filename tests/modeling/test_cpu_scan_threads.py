"""The fused CPU scan's forward pass on several threads: every work item once, the same result on any number of
threads, and a working pool in a forked child (whose parent's pool threads are gone)."""

import multiprocessing
import threading

import pytest
import torch

from mamba_retrieval.modeling import cpu_scan

pytestmark = pytest.mark.skipif(not cpu_scan.fused_scan_available(), reason="numba is not installed")


def scan_inputs(batch=3, channels=200, length=29, state=8):
    """200 channels: three full channel blocks and a partial one, per batch row (12 work items)."""
    g = torch.Generator().manual_seed(0)
    u, dt = torch.randn(batch, channels, length, generator=g), torch.rand(batch, channels, length, generator=g)
    A = -torch.rand(channels, state, generator=g)
    B, C = torch.randn(batch, state, length, generator=g), torch.randn(batch, state, length, generator=g)
    return u, dt, A, B, C, torch.randn(channels, generator=g), torch.randn(batch, channels, state, generator=g)


def scan_on(threads, inputs):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        *core, state = inputs
        return cpu_scan._scan_core(*core, initial_state=state)
    finally:
        torch.set_num_threads(before)


def test_every_job_runs_once_on_all_threads():
    seen, lock = [], threading.Lock()
    names = set()

    def kernel(job, pause):
        with lock:
            seen.append(job)
            names.add(threading.current_thread().name)
        pause.wait(0.01)  # long enough that the other threads get jobs too

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        cpu_scan._run_jobs(kernel, range(5, 45), (threading.Event(),))
    finally:
        torch.set_num_threads(before)
    assert sorted(seen) == list(range(5, 45))
    assert len(names) == 3  # the caller and two pool threads


def test_an_error_in_a_job_reaches_the_caller():
    def kernel(job):
        if job == 7:
            raise ValueError("job 7 failed")

    with pytest.raises(ValueError, match="job 7 failed"):
        cpu_scan._run_jobs(kernel, range(10), ())


def test_the_result_does_not_depend_on_the_thread_count():
    inputs = scan_inputs()
    y1, state1 = scan_on(1, inputs)
    for threads in (2, 5):
        y, state = scan_on(threads, inputs)
        assert torch.equal(y, y1) and torch.equal(state, state1)  # each item is computed alone: bit for bit


def _scan_in_child(queue):
    y, _ = scan_on(2, scan_inputs())
    queue.put(y.numpy())  # numpy: pickled whole (a tensor would go by shared memory, gone with the child)


def test_a_forked_child_builds_its_own_pool():
    inputs = scan_inputs()
    expected, _ = scan_on(2, inputs)  # the parent's pool exists now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_scan_in_child, args=(queue,))
    child.start()
    y = queue.get(timeout=120)  # with the parent's (dead) pool threads the child would wait forever
    child.join(timeout=60)
    assert child.exitcode == 0 and torch.equal(torch.from_numpy(y), expected)
