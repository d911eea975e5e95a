"""The chunked Mamba-1 scan (the fallback without mamba_ssm's CUDA op or numba, and the carrier of streaming state
on CUDA) held to the per-token reference: outputs, final states and gradients, fp32 and bf16, on CPU and CUDA."""

from functools import partial

import pytest
import torch
from helpers import tiny_model
from test_fast_paths import assert_close_to, padded_batch, run_model, scan_inputs

from mamba_retrieval.modeling import modeling_mamba_retrieval as modeling

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")
# Both scans compute in float32, only the order of the additions differs: fp32 agrees to ~3e-7 of the largest value
# here (tighter than mamba_ssm's 6e-4 / 2e-3); in bf16 only the rounding of the outputs and of the gradients of bf16
# inputs can differ, by an ulp (2^-8 of a value), so 1e-2 of the largest one (mamba_ssm: 3e-2 / 5e-2).
TOLERANCE = {torch.float32: 2e-6, torch.bfloat16: 1e-2}
CUDA_TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1e-2}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def both_scans(dtype, device="cpu", chunk_size=None, **shape):
    """Output, final state and the gradients of every input (and of the initial state) for the chunked scan and the
    reference, from the same inputs and the same random output gradients."""
    inputs = scan_inputs(dtype, **shape)
    g = torch.Generator().manual_seed(1)
    inputs.append(torch.randn(inputs[0].shape[0], inputs[0].shape[1], inputs[2].shape[1], generator=g))
    chunked = partial(modeling.selective_scan_chunked, chunk_size=chunk_size)
    results = []
    for scan in (chunked, modeling.selective_scan_reference):
        leaves = [t.clone().to(device).requires_grad_() for t in inputs]
        out, state = scan(*leaves[:-1], initial_state=leaves[-1], return_final_state=True)
        g = torch.Generator().manual_seed(2)
        grad_out, grad_state = torch.randn(out.shape, generator=g), torch.randn(state.shape, generator=g)
        ((out.float() * grad_out.to(device)).sum() + (state * grad_state.to(device)).sum()).backward()
        results.append((out, state, [t.grad for t in leaves]))
    return results


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk_size", [None, 1, 5, 16])  # 37 tokens: chunks of 5 and 16 leave a partial one
def test_chunked_scan_matches_reference_forward_state_and_gradients(dtype, chunk_size):
    (out, state, grads), (ref_out, ref_state, ref_grads) = both_scans(dtype, chunk_size=chunk_size)
    assert out.dtype == ref_out.dtype == dtype and state.dtype == ref_state.dtype == torch.float32
    assert_close_to(out, ref_out, dtype, "out", TOLERANCE)
    assert_close_to(state, ref_state, torch.float32, "final state", TOLERANCE)
    for name, grad, ref_grad in zip(NAMES, grads, ref_grads):
        assert grad.dtype == ref_grad.dtype
        assert_close_to(grad, ref_grad, dtype, f"d{name}", TOLERANCE)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_scan_of_one_token(dtype):
    (out, state, grads), (ref_out, ref_state, ref_grads) = both_scans(dtype, length=1)
    assert out.shape == ref_out.shape == (2, 70, 1)
    assert_close_to(out, ref_out, dtype, "out", TOLERANCE)
    assert_close_to(state, ref_state, torch.float32, "final state", TOLERANCE)
    for name, grad, ref_grad in zip(NAMES, grads, ref_grads):
        assert_close_to(grad, ref_grad, dtype, f"d{name}", TOLERANCE)


def test_chunked_scan_carries_state_across_calls():
    u, delta, A, B, C, D, z, delta_bias = scan_inputs(torch.float32, length=40)
    whole, whole_state = modeling.selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, return_final_state=True)
    state, outs = None, []
    for piece in (slice(0, 13), slice(13, 14), slice(14, 40)):
        out, state = modeling.selective_scan_chunked(
            *(u[..., piece], delta[..., piece], A, B[..., piece], C[..., piece], D, z[..., piece], delta_bias),
            initial_state=state,
            return_final_state=True,
            chunk_size=4,
        )
        outs.append(out)
    assert_close_to(torch.cat(outs, dim=-1), whole, torch.float32, "out", TOLERANCE)
    assert_close_to(state, whole_state, torch.float32, "final state", TOLERANCE)


def test_chunked_scan_stays_finite_under_strong_decay():
    """Decays of exp(-1000) per step: a cumulative form that divides by the running decay (exp(+sum)) overflows to
    inf and NaN here; the chunked scan multiplies decays only, and agrees with the reference."""
    u, delta, A, B, C, D, z, delta_bias = scan_inputs(torch.float32, length=64)
    A = A * 1000.0
    delta = delta.abs() + 3.0
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    out = modeling.selective_scan_chunked(*inputs, chunk_size=64)
    assert torch.isfinite(out).all()
    assert_close_to(out, modeling.selective_scan_reference(*inputs), torch.float32, "out", TOLERANCE)


def test_default_chunk_bounds_the_intermediates(monkeypatch):
    """The default chunk is the largest power of two that keeps a (batch, channels, state, chunk) float32 tensor
    within SCAN_CHUNK_ELEMENTS: here 2 x 70 x 8 x 20 -> 16, so 40 tokens run as 16 + 16 + 8."""
    monkeypatch.setattr(modeling, "SCAN_CHUNK_ELEMENTS", 2 * 70 * 8 * 20)
    inputs = scan_inputs(torch.float32, length=40)
    with torch.no_grad():
        default = modeling.selective_scan_chunked(*inputs)
        for other in (8, 32):  # a different chunk adds in a different order: not bitwise equal
            assert not torch.equal(default, modeling.selective_scan_chunked(*inputs, chunk_size=other))
        torch.testing.assert_close(default, modeling.selective_scan_chunked(*inputs, chunk_size=16), rtol=0, atol=0)


def test_chunked_scan_keeps_no_chunk_of_states_for_backward_or_in_its_final_state():
    """With gradients, each chunk is recomputed in the backward pass: no tensor as large as one chunk's states
    (chunk, batch, channels, state) is saved, and the final state (a streaming cache) holds its own memory only."""
    inputs = [t.requires_grad_() for t in scan_inputs(torch.float32, length=64, state=16)]
    chunk = 8
    chunk_states_bytes = chunk * 2 * 70 * 16 * 4
    saved = []

    def pack(tensor):
        saved.append(tensor.untyped_storage().nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out, state = modeling.selective_scan_chunked(*inputs, chunk_size=chunk, return_final_state=True)
    assert saved and max(saved) < chunk_states_bytes, f"largest saved tensor {max(saved)} bytes"
    assert state.untyped_storage().nbytes() == state.numel() * 4
    out.sum().backward()
    assert all(t.grad is not None for t in inputs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_model_without_numba_runs_the_chunked_scan_like_the_reference(dtype, monkeypatch):
    """A padded batch, forward and parameter gradients, with the fused CPU scan absent: the chunked path."""
    monkeypatch.setattr(modeling, "fused_selective_scan", None)  # as if numba were not installed
    model = tiny_model("mamba").to(dtype).train()
    input_ids, attention_mask = padded_batch([29, 7, 17])
    chunked = run_model(model, input_ids, attention_mask, reference=False, monkeypatch=monkeypatch)
    reference = run_model(model, input_ids, attention_mask, reference=True, monkeypatch=monkeypatch)
    real = attention_mask.bool()
    tolerance = {torch.float32: 1e-5, torch.bfloat16: 3e-2}  # bf16 weights and activations between the layers
    assert_close_to(chunked[0][real], reference[0][real], dtype, "last_hidden_state", tolerance)
    assert_close_to(chunked[1], reference[1], dtype, "sentence_embedding", tolerance)
    for name, grad in reference[2].items():
        assert_close_to(chunked[2][name], grad, dtype, f"grad of {name}", {torch.float32: 1e-4, torch.bfloat16: 3e-2})


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk_size", [None, 5])
def test_chunked_scan_on_cuda_matches_reference(dtype, chunk_size):
    (out, state, grads), (ref_out, ref_state, ref_grads) = both_scans(dtype, "cuda", chunk_size)
    assert out.is_cuda and out.dtype == dtype
    assert_close_to(out, ref_out, dtype, "out", CUDA_TOLERANCE)
    assert_close_to(state, ref_state, torch.float32, "final state", CUDA_TOLERANCE)
    for name, grad, ref_grad in zip(NAMES, grads, ref_grads):
        assert_close_to(grad, ref_grad, dtype, f"d{name}", CUDA_TOLERANCE)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_model_on_cuda_without_mamba_ssm_runs_the_chunked_scan_like_the_reference(dtype, monkeypatch):
    monkeypatch.setattr(modeling, "selective_scan_fn", None)  # as if mamba_ssm's op were not built
    # and the conv on torch's path in both runs (causal_conv1d against cuDNN's TF32 conv differs by ~1e-3): the test
    # holds the scan alone
    monkeypatch.setattr(modeling, "causal_conv1d_fn", None)
    model = tiny_model("mamba").to("cuda", dtype).train()
    input_ids, attention_mask = (t.cuda() for t in padded_batch([29, 7, 17]))
    chunked = run_model(model, input_ids, attention_mask, reference=False, monkeypatch=monkeypatch)
    reference = run_model(model, input_ids, attention_mask, reference=True, monkeypatch=monkeypatch)
    real = attention_mask.bool()
    tolerance = {torch.float32: 1e-5, torch.bfloat16: 3e-2}
    assert_close_to(chunked[0][real], reference[0][real], dtype, "last_hidden_state", tolerance)
    assert_close_to(chunked[1], reference[1], dtype, "sentence_embedding", tolerance)
    for name, grad in reference[2].items():
        assert_close_to(chunked[2][name], grad, dtype, f"grad of {name}", {torch.float32: 1e-4, torch.bfloat16: 3e-2})


def test_model_without_numba_streams_through_the_chunked_scan(monkeypatch):
    """Chunked streaming carries each layer's state through the chunked scan and equals the one-pass result."""
    monkeypatch.setattr(modeling, "fused_selective_scan", None)
    model = tiny_model("mamba")
    input_ids, attention_mask = padded_batch([50, 23, 11, 12])
    with torch.no_grad():
        model.stream_chunk_size = None
        whole = model(input_ids=input_ids, attention_mask=attention_mask)
        model.stream_chunk_size = 11
        streamed = model(input_ids=input_ids, attention_mask=attention_mask)
    real = attention_mask.bool()
    assert_close_to(streamed.last_hidden_state[real], whole.last_hidden_state[real], torch.float32, "states")
    assert_close_to(streamed.sentence_embedding, whole.sentence_embedding, torch.float32, "embedding")


@pytest.mark.cuda
@needs_cuda
def test_streaming_on_cuda_carries_state_through_the_chunked_scan(monkeypatch):
    """On CUDA a carried state always goes through the chunked scan (mamba_ssm's op takes none); with mamba_ssm
    installed the one-pass run uses its kernels, hence mamba_ssm's own fp32 tolerance."""
    # streaming's conv is torch's (causal_conv1d takes no carried inputs): no TF32 in it, to compare like with like
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    model = tiny_model("mamba").cuda()
    input_ids, attention_mask = (t.cuda() for t in padded_batch([50, 23, 11, 12]))
    with torch.no_grad():
        model.stream_chunk_size = None
        whole = model(input_ids=input_ids, attention_mask=attention_mask)
        model.stream_chunk_size = 11
        streamed = model(input_ids=input_ids, attention_mask=attention_mask)
    real = attention_mask.bool()
    tolerance = {torch.float32: 6e-4}
    assert_close_to(streamed.last_hidden_state[real], whole.last_hidden_state[real], torch.float32, "states", tolerance)
    assert_close_to(streamed.sentence_embedding, whole.sentence_embedding, torch.float32, "embedding", tolerance)
