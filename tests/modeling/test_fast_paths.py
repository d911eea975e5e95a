"""Fast paths (fused CPU scan, chunked streaming, CUDA kernels) held to the readable reference path."""

import pytest
import torch
from helpers import BACKBONES, run_fresh_python, tiny_model

from mamba_retrieval.modeling import modeling_mamba_retrieval as modeling
from mamba_retrieval.modeling.cpu_scan import fused_scan_available, fused_selective_scan

needs_numba = pytest.mark.skipif(not fused_scan_available(), reason="numba is not installed")
# Tolerances relative to the largest reference value: fp32 far tighter than mamba_ssm's 6e-4 / 2e-3 (a model's
# parameter gradients sum over every position, so they get 1e-4); bf16 as loose as mamba_ssm's own kernel tests
# (both paths compute in float32, bf16 only rounds inputs and outputs).
TOLERANCE = {torch.float32: 2e-5, torch.bfloat16: 3e-2}
GRAD_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 3e-2}


def assert_close_to(fast, reference, dtype, what, tolerance=TOLERANCE):
    scale = reference.float().abs().max().clamp(min=1e-6)
    error = (fast.float() - reference.float()).abs().max()
    assert error <= tolerance[dtype] * scale, f"{what}: max error {error:.3g} vs scale {scale:.3g} ({dtype})"


def scan_inputs(dtype, batch=2, channels=70, length=37, state=8, seed=0):
    """Random Mamba-1 scan inputs; 70 channels = one full and one partial channel block of the fused kernel."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, channels, length, generator=g)
    delta = 0.5 * torch.randn(batch, channels, length, generator=g)
    A = -torch.exp(torch.randn(channels, state, generator=g) * 0.5)
    B = torch.randn(batch, state, length, generator=g)
    C = torch.randn(batch, state, length, generator=g)
    D = torch.randn(channels, generator=g)
    z = torch.randn(batch, channels, length, generator=g)
    delta_bias = torch.rand(channels, generator=g) - 2.0
    return [t.to(dtype) if t.dim() == 3 else t for t in (u, delta, A, B, C, D, z, delta_bias)]


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_scan_matches_reference_forward_and_gradients(dtype):
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    fast_inputs = [t.clone().requires_grad_() for t in scan_inputs(dtype)]
    ref_inputs = [t.clone().requires_grad_() for t in scan_inputs(dtype)]
    fast = fused_selective_scan(*fast_inputs)
    reference = modeling.selective_scan_reference(*ref_inputs)
    assert fast.dtype == reference.dtype == dtype
    assert_close_to(fast, reference, dtype, "out")
    grad = torch.randn(fast.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    fast.backward(grad)
    reference.backward(grad)
    for name, f, r in zip(names, fast_inputs, ref_inputs):
        assert f.grad.dtype == r.grad.dtype
        assert_close_to(f.grad, r.grad, dtype, f"d{name}")


@needs_numba
def test_fused_scan_carries_state_across_chunks():
    u, delta, A, B, C, D, z, delta_bias = scan_inputs(torch.float32, length=40)
    whole, whole_state = modeling.selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, return_final_state=True)
    state, outs = None, []
    for piece in (slice(0, 13), slice(13, 14), slice(14, 40)):
        out, state = fused_selective_scan(
            u[..., piece],
            delta[..., piece],
            A,
            B[..., piece],
            C[..., piece],
            D,
            z[..., piece],
            delta_bias,
            initial_state=state,
            return_final_state=True,
        )
        outs.append(out)
    assert_close_to(torch.cat(outs, dim=-1), whole, torch.float32, "out")
    assert_close_to(state, whole_state, torch.float32, "final state")


@needs_numba
def test_fused_scan_with_carried_state_refuses_gradients():
    inputs = [t.requires_grad_() for t in scan_inputs(torch.float32)]
    with pytest.raises(RuntimeError, match="inference-only"):
        fused_selective_scan(*inputs, return_final_state=True)


def padded_batch(lengths, vocab=50000, seed=0):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(2, vocab, (len(lengths), max(lengths)), generator=g)
    attention_mask = torch.zeros_like(input_ids)
    for row, n in enumerate(lengths):
        attention_mask[row, :n] = 1
        input_ids[row, n:] = 1
    return input_ids, attention_mask


def run_model(model, input_ids, attention_mask, reference, monkeypatch):
    """last_hidden_state, embedding and parameter gradients of a padded batch on the chosen path."""
    monkeypatch.setenv(modeling.KERNELS_ENV, "reference" if reference else "auto")
    model.zero_grad()
    output = model(input_ids=input_ids, attention_mask=attention_mask)
    mask = attention_mask[:, :, None].to(output.last_hidden_state.dtype)
    (output.last_hidden_state * mask).float().square().mean().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return output.last_hidden_state.detach(), output.sentence_embedding.detach(), grads


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_model_fast_path_matches_reference_path(dtype, monkeypatch):
    model = tiny_model("mamba").to(dtype).train()
    input_ids, attention_mask = padded_batch([29, 7, 17])
    fast = run_model(model, input_ids, attention_mask, reference=False, monkeypatch=monkeypatch)
    reference = run_model(model, input_ids, attention_mask, reference=True, monkeypatch=monkeypatch)
    real = attention_mask.bool()
    assert_close_to(fast[0][real], reference[0][real], dtype, "last_hidden_state")
    assert_close_to(fast[1], reference[1], dtype, "sentence_embedding")
    for name, grad in reference[2].items():
        assert_close_to(fast[2][name], grad, dtype, f"grad of {name}", GRAD_TOLERANCE)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("kernels", ["auto", "reference"])
def test_streaming_in_chunks_equals_one_pass(backbone, kernels, monkeypatch):
    monkeypatch.setenv(modeling.KERNELS_ENV, kernels)
    model = tiny_model(backbone)  # Mamba-2 chunk_size 8: stream chunks of 11 cut through its chunks
    input_ids, attention_mask = padded_batch([50, 23, 11, 12])  # right padding; rows end in different chunks
    with torch.no_grad():
        model.stream_chunk_size = None
        whole = model(input_ids=input_ids, attention_mask=attention_mask)
        model.stream_chunk_size = 11
        streamed = model(input_ids=input_ids, attention_mask=attention_mask)
        lean = model(input_ids=input_ids, attention_mask=attention_mask, output_token_states=False)
    real = attention_mask.bool()
    assert_close_to(streamed.last_hidden_state[real], whole.last_hidden_state[real], torch.float32, "states")
    assert_close_to(streamed.sentence_embedding, whole.sentence_embedding, torch.float32, "embedding")
    assert lean.last_hidden_state is None
    torch.testing.assert_close(lean.sentence_embedding, streamed.sentence_embedding, rtol=0, atol=0)


def test_streaming_is_not_used_with_gradients():
    model = tiny_model("mamba2")
    model.stream_chunk_size = 4
    input_ids, attention_mask = padded_batch([20, 9])
    output = model(input_ids=input_ids, attention_mask=attention_mask)
    output.sentence_embedding.sum().backward()  # the one-pass path: gradients reach the first layer
    assert model.backbone.layers[0].mixer.in_proj.weight.grad.abs().sum() > 0


def test_model_runs_without_numba_on_the_chunked_scan(tmp_path):
    """A Hub folder loaded where numba is missing still runs (the chunked PyTorch scan), warns once with the install
    hint, and gives the same embedding twice."""
    code = """
import sys
sys.modules["numba"] = None  # as if numba were not installed
import torch
from transformers.utils import logging
from mamba_retrieval.modeling import modeling_mamba_retrieval as m
from mamba_retrieval.modeling.configuration_mamba_retrieval import MambaRetrievalConfig
assert m.fused_selective_scan is None
logging.set_verbosity_warning()
torch.manual_seed(0)
model = m.MambaForRetrieval(MambaRetrievalConfig(hidden_size=32, num_hidden_layers=2, state_size=8)).eval()
with torch.no_grad():
    a = model(input_ids=torch.tensor([[5, 6, 7]])).sentence_embedding
    b = model(input_ids=torch.tensor([[5, 6, 7]])).sentence_embedding
print("EMB", a[0, :3].tolist(), torch.equal(a, b))
"""
    result = run_fresh_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "EMB" in result.stdout and "True" in result.stdout
    assert result.stderr.count("pip install numba") == 1  # warning_once, not once per layer


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_kernels_match_reference(backbone, dtype, monkeypatch):
    kernel = modeling.selective_scan_fn if backbone == "mamba" else modeling.mamba_chunk_scan_combined
    if kernel is None:
        pytest.skip("mamba_ssm kernels are not installed")
    model = tiny_model(backbone).to("cuda", dtype).train()
    input_ids, attention_mask = (t.cuda() for t in padded_batch([29, 7, 17]))
    fast = run_model(model, input_ids, attention_mask, reference=False, monkeypatch=monkeypatch)
    reference = run_model(model, input_ids, attention_mask, reference=True, monkeypatch=monkeypatch)
    real = attention_mask.bool()
    tolerance = {torch.float32: 6e-4, torch.bfloat16: 5e-2}[dtype]  # mamba_ssm's own kernel tolerances
    for fast_value, ref_value in ((fast[0][real], reference[0][real]), (fast[1], reference[1])):
        torch.testing.assert_close(fast_value.float(), ref_value.float(), rtol=tolerance, atol=tolerance)
    for name, grad in reference[2].items():
        scale = grad.float().abs().max().clamp(min=1e-6)
        assert (fast[2][name].float() - grad.float()).abs().max() <= 10 * tolerance * scale, name


@pytest.mark.slow
@needs_numba
def test_the_first_compile_of_the_fused_scan_is_announced_once(tmp_path):
    """A first search sat silent at "Batches 0/2" for ~20 s while numba compiled the scan. With an empty numba cache
    the first encode says what is happening, once; with the cache filled, a fresh process says nothing."""
    import os
    import subprocess
    import sys

    code = """
from sentence_transformers import SentenceTransformer
from mamba_retrieval.modeling.pretrained import model_path
model = SentenceTransformer(model_path(), trust_remote_code=True, device="cpu")
model.encode_document(["first text", "second text"])
model.encode_document(["third text"])
"""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "HF_HUB_OFFLINE": "1"}
    runs = [
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
        for _ in range(2)
    ]
    assert all(run.returncode == 0 for run in runs), runs[0].stderr[-2000:] + runs[1].stderr[-2000:]
    assert runs[0].stderr.count("compiling the fused CPU scan (forward)") == 1, runs[0].stderr[-2000:]
    assert "compiling" not in runs[1].stderr
