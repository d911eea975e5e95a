"""Mamba retrieval models (remote code: copied verbatim into every Hub folder).

`MambaForRetrieval` embeds `text + EOS` with a Mamba-1 or Mamba-2 backbone and returns the final-layer state at the
last real token, L2-normalised. The module and parameter names follow transformers' `MambaModel` / `Mamba2Model`
under the prefix `backbone.`, so `state-spaces/mamba-*-hf` style weights map one to one.

This file imports only torch and transformers, plus optional kernels behind guarded imports (the project's fused CPU
scan, mamba_ssm, causal_conv1d). The scans below are the readable reference implementations and, for Mamba-1 where no
kernel is installed, a chunked PyTorch scan; the faster ones plug in at `_selective_scan` / `_ssd_scan`, chosen per
call (`MAMBA_RETRIEVAL_KERNELS=reference` forces the reference).
"""

import math
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, logging

from .configuration_mamba_retrieval import MambaRetrievalConfig, MambaScannerConfig

try:  # transformers >= 5: init functions that leave loaded parameters alone
    from transformers import initialization as init
except ImportError:  # transformers 4.x only initialises parameters missing from the checkpoint
    init = nn.init

logger = logging.get_logger(__name__)

# Optional fast paths, each probed for its compiled op, not only its package. A Hub folder loaded where none of them
# is installed runs on the PyTorch scans below (Mamba-1's chunked one, Mamba-2's chunked SSD form).
try:  # the fused CPU scan (numba): the installed package's first, whose compiled kernel numba caches once for every
    # folder; else the folder's own cpu_scan.py (numba caches per file, so per folder)
    try:
        from mamba_retrieval.modeling.cpu_scan import fused_scan_available, fused_selective_scan
    except ImportError:
        from .cpu_scan import fused_scan_available, fused_selective_scan

    if not fused_scan_available():
        fused_selective_scan = None
except ImportError:
    fused_selective_scan = None
try:  # probe the Mamba-1 CUDA op itself: mamba_ssm installed with MAMBA_SKIP_CUDA_BUILD=TRUE has only its Python
    import selective_scan_cuda  # noqa: F401
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
except (ImportError, OSError):
    selective_scan_fn = None
try:  # Mamba-2 SSD kernels (Triton)
    import triton  # noqa: F401
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
except (ImportError, OSError):
    mamba_chunk_scan_combined = None
try:
    import causal_conv1d_cuda  # noqa: F401
    from causal_conv1d import causal_conv1d_fn
except (ImportError, OSError):
    causal_conv1d_fn = None

KERNELS_ENV = "MAMBA_RETRIEVAL_KERNELS"  # "reference" forces the readable scans; "auto" (default) picks per call
CUDA_HINT = "pip install --no-build-isolation mamba-ssm causal-conv1d (built against this torch and CUDA)"
CPU_HINT = "pip install numba (the folder's cpu_scan.py then runs it)"
# the chunked Mamba-1 scan's default chunk keeps its (chunk, batch, channels, state) float32 tensors within this: 64 MiB
SCAN_CHUNK_ELEMENTS = 2**24


# --------------------------------------------------------------------------------------------------------------------
# Reference scans (float32 state, any device)
# --------------------------------------------------------------------------------------------------------------------


def selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, initial_state=None, return_final_state=False):
    """Mamba-1 selective scan, `mamba_ssm.selective_scan_fn` semantics with `delta_softplus=True`.

    u, delta, z: (batch, channels, length); A: (channels, state); B, C: (batch, state, length); D, delta_bias:
    (channels,). Returns `(y * silu(z))` in u's dtype. The state (batch, channels, state) is kept in float32 and the
    decay is computed one step at a time, so memory does not grow with the length. `initial_state` (float32) and
    `return_final_state` carry the state across chunks of a long sequence.
    """
    dtype = u.dtype
    u, B, C = u.float(), B.float(), C.float()
    delta = F.softplus(delta.float() + delta_bias.float()[None, :, None])
    delta_u = delta * u
    state = u.new_zeros(u.shape[0], u.shape[1], A.shape[1]) if initial_state is None else initial_state.float()
    ys = []
    for t in range(u.shape[2]):
        state = torch.exp(delta[:, :, t, None] * A) * state + delta_u[:, :, t, None] * B[:, None, :, t]
        ys.append(torch.einsum("bdn,bn->bd", state, C[:, :, t]))
    y = torch.stack(ys, dim=-1) + u * D.float()[None, :, None]
    out = (y * F.silu(z.float())).to(dtype)
    return (out, state) if return_final_state else out


def _linear_recurrence(decay, inputs):
    """h_t = decay_t * h_{t-1} + inputs_t along the first dim, from h_{-1} = 0, in log2(length) rounds of whole-tensor
    ops: each pair of steps is one step of the same form (decay_odd * decay_even, decay_odd * inputs_even +
    inputs_odd); the half-length recurrence gives h at the odd positions, one more step each gives the even ones.
    Only products of decays (<= 1) are formed, so nothing overflows."""
    length = inputs.shape[0]
    if length == 1:
        return inputs
    if length % 2:  # a final step with decay 1 and input 0 changes nothing before it
        decay, inputs = (
            torch.cat([decay, torch.ones_like(decay[:1])]),
            torch.cat([inputs, torch.zeros_like(inputs[:1])]),
        )
    decay_even, decay_odd, inputs_even, inputs_odd = decay[0::2], decay[1::2], inputs[0::2], inputs[1::2]
    h_odd = _linear_recurrence(decay_odd * decay_even, torch.addcmul(inputs_odd, decay_odd, inputs_even))
    h_even = torch.cat([inputs_even[:1], torch.addcmul(inputs_even[1:], decay_even[1:], h_odd[:-1])])
    return torch.stack([h_even, h_odd], dim=1).flatten(0, 1)[:length]


def _selective_scan_chunk(state, delta, delta_u, A, B, C):
    """One chunk of `selective_scan_chunked`, position-major (each position's (batch, channels, state) block is
    contiguous, so the even/odd halves of `_linear_recurrence` are plain slices): delta, delta_u (chunk, batch,
    channels); B, C (chunk, batch, state). Returns (y without the D term (chunk, batch, channels), the last state)."""
    decay = torch.exp(delta[..., None] * A)
    inputs = delta_u[..., None] * B[:, :, None, :]
    inputs[0].addcmul_(decay[0], state)  # the carried state enters through the first position
    states = _linear_recurrence(decay, inputs)
    # a copy of the last state: a view would keep the whole chunk's states alive (in the next chunk's saved
    # tensors, in a streaming cache)
    return (states * C[:, :, None, :]).sum(-1), states[-1].clone()


def selective_scan_chunked(
    u, delta, A, B, C, D, z, delta_bias, initial_state=None, return_final_state=False, chunk_size=None
):
    """`selective_scan_reference` (same arguments and results) without a Python step per token: for the GPU without
    mamba_ssm's kernel, for a carried state (which that kernel cannot take), and for the CPU without numba.

    The sequence runs in chunks of `chunk_size` positions (default: the largest power of two that keeps one (chunk,
    batch, channels, state) float32 tensor within SCAN_CHUNK_ELEMENTS); inside a chunk `_linear_recurrence` computes
    every position's state in log2(chunk) rounds of whole-tensor ops, and the float32 state is carried from chunk to
    chunk. Memory is bounded by the chunk, not the length: with gradients each chunk is recomputed in the backward
    pass (activation checkpointing), so only the chunk inputs and one state per chunk are kept.
    """
    dtype = u.dtype
    batch, channels, length = u.shape
    u, A = u.float(), A.float()
    delta = F.softplus(delta.float() + delta_bias.float()[None, :, None])
    # position-major copies, (length, batch, channels | state): small next to the per-chunk states
    delta_t, delta_u_t = (t.permute(2, 0, 1).contiguous() for t in (delta, delta * u))
    B_t, C_t = (t.float().permute(2, 0, 1).contiguous() for t in (B, C))
    state = u.new_zeros(batch, channels, A.shape[1]) if initial_state is None else initial_state.float()
    if chunk_size is None:
        fits = max(1, SCAN_CHUNK_ELEMENTS // (batch * channels * A.shape[1]))
        chunk_size = 1 << (fits.bit_length() - 1)
    recompute = torch.is_grad_enabled() and any(t.requires_grad for t in (state, delta_u_t, A, B_t, C_t))
    ys = []
    for start in range(0, length, chunk_size):
        piece = slice(start, start + chunk_size)
        args = (state, delta_t[piece], delta_u_t[piece], A, B_t[piece], C_t[piece])
        if recompute:
            y, state = checkpoint(_selective_scan_chunk, *args, use_reentrant=False)
        else:
            y, state = _selective_scan_chunk(*args)
        ys.append(y)
    y = torch.cat(ys).permute(1, 2, 0) + u * D.float()[None, :, None]
    out = (y * F.silu(z.float())).to(dtype)
    return (out, state) if return_final_state else out


def _segment_sum(x):
    """out[..., i, j] = x[..., j+1] + ... + x[..., i] for j < i, 0 on the diagonal, -inf above it."""
    length = x.shape[-1]
    x = x[..., None].expand(*x.shape, length)
    below = torch.tril(torch.ones(length, length, dtype=torch.bool, device=x.device), diagonal=-1)
    sums = torch.cumsum(x.masked_fill(~below, 0), dim=-2)
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool, device=x.device), diagonal=0)
    return sums.masked_fill(~causal, -torch.inf)


def ssd_scan_reference(x, dt, A, B, C, D, chunk_size, initial_state=None, return_final_state=False):
    """Mamba-2 scan (the chunked "SSD" form of the Mamba-2 paper), float32.

    x: (batch, length, heads, head_dim); dt: (batch, length, heads), already softplus-ed; A, D: (heads,);
    B, C: (batch, length, heads, state), groups already expanded to heads. Returns y like x, in float32.
    `initial_state` (batch, heads, head_dim, state) and `return_final_state` carry the state across calls.
    """
    batch, length, heads, head_dim = x.shape
    pad = (-length) % chunk_size
    # Zero padding at the end: dt = 0 means no decay and no input, so the real positions are unchanged.
    x, dt, B, C = (F.pad(t.float(), (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, dt, B, C))
    chunks = (length + pad) // chunk_size

    def to_chunks(t):
        return t.reshape(batch, chunks, chunk_size, *t.shape[2:])

    X, B, C = to_chunks(x * dt[..., None]), to_chunks(B), to_chunks(C)
    A_dt = to_chunks(A.float()[None, None, :] * dt).permute(0, 3, 1, 2)  # (batch, heads, chunks, chunk_size)
    A_cum = torch.cumsum(A_dt, dim=-1)

    # 1. outputs within each chunk (the quadratic, attention-like form)
    decay = torch.exp(_segment_sum(A_dt))
    scores = torch.einsum("bclhn,bcshn->bhcls", C, B) * decay
    y_diag = torch.einsum("bhcls,bcshp->bclhp", scores, X)
    # 2. the state each chunk leaves behind
    decay_to_end = torch.exp(A_cum[..., -1:] - A_cum)
    chunk_states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, decay_to_end, X)
    # 3. the state entering each chunk: a recurrence over chunks, starting from zero (or the carried state)
    start = torch.zeros_like(chunk_states[:, :1]) if initial_state is None else initial_state.float()[:, None]
    chunk_states = torch.cat([start, chunk_states], dim=1)
    chunk_decay = torch.exp(_segment_sum(F.pad(A_cum[..., -1], (1, 0))))
    states = torch.einsum("bhzc,bchpn->bzhpn", chunk_decay, chunk_states)
    entering, final_state = states[:, :-1], states[:, -1]
    # 4. what the entering state contributes to each position
    y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", C, entering, torch.exp(A_cum))

    y = (y_diag + y_off).reshape(batch, chunks * chunk_size, heads, head_dim)[:, :length]
    y = y + x[:, :length] * D.float()[None, None, :, None]
    return (y, final_state) if return_final_state else y


# Dispatch points: one scan per backbone, chosen per call. `cache` (a dict per layer) carries the state between chunks
# of a long sequence (see `MambaForRetrieval.stream_chunk_size`).
def _use_reference():
    return os.environ.get(KERNELS_ENV, "auto").lower() == "reference"


def _selective_scan(u, delta, A, B, C, D, z, delta_bias, cache=None):
    if _use_reference():
        scan = selective_scan_reference
    elif u.is_cuda and selective_scan_fn is not None and cache is None:
        return selective_scan_fn(u, delta, A, B, C, D.float(), z, delta_bias.float(), delta_softplus=True)
    elif u.device.type == "cpu" and fused_selective_scan is not None:
        scan = fused_selective_scan
    else:
        scan = selective_scan_chunked
        if u.is_cuda:
            logger.warning_once(
                "Mamba-1 runs its chunked PyTorch scan on CUDA, slower than mamba_ssm's fused kernel"
                + (
                    " (which cannot carry a state across the chunks of streaming; stream_chunk_size=None uses it)"
                    if selective_scan_fn is not None
                    else f"; for the CUDA kernels: {CUDA_HINT}"
                )
            )
        elif u.device.type == "cpu":
            logger.warning_once(f"Mamba-1 runs its chunked PyTorch scan on CPU; for the fused CPU scan: {CPU_HINT}")
    if cache is None:
        return scan(u, delta, A, B, C, D, z, delta_bias)
    out, cache["ssm"] = scan(
        u, delta, A, B, C, D, z, delta_bias, initial_state=cache.get("ssm"), return_final_state=True
    )
    return out


def _ssd_scan(x, dt, A, B, C, D, chunk_size, cache=None):
    if not _use_reference() and x.is_cuda:
        if mamba_chunk_scan_combined is not None:
            y = mamba_chunk_scan_combined(
                x,
                dt,
                A,
                B,
                C,
                chunk_size,
                D=D.float(),
                initial_states=None if cache is None else cache.get("ssm"),
                return_final_states=cache is not None,
            )
            if cache is not None:
                y, cache["ssm"] = y
            return y.float()
        logger.warning_once(f"Mamba-2 runs its reference scan on CUDA; for the Triton kernels: {CUDA_HINT}")
    # On CPU the chunked reference is matmul-based already (measured by `mamba-retrieval bench`).
    if cache is None:
        return ssd_scan_reference(x, dt, A, B, C, D, chunk_size)
    y, cache["ssm"] = ssd_scan_reference(
        x, dt, A, B, C, D, chunk_size, initial_state=cache.get("ssm"), return_final_state=True
    )
    return y


def _conv_silu(conv1d, x, cache=None):
    """silu(causal depthwise conv) of x (batch, channels, length); `cache["conv"]` holds the last kernel-1 inputs
    of the previous chunk."""
    length, kernel = x.shape[-1], conv1d.kernel_size[0]
    if cache is None:
        if x.is_cuda and causal_conv1d_fn is not None and not _use_reference():
            return causal_conv1d_fn(x, conv1d.weight.squeeze(1), conv1d.bias, activation="silu")
        return F.silu(conv1d(x)[..., :length])
    previous = cache.get("conv")
    if previous is None:
        previous = x.new_zeros(x.shape[0], x.shape[1], kernel - 1)
    x = torch.cat([previous, x], dim=-1)
    cache["conv"] = x[..., x.shape[-1] - (kernel - 1) :].clone()  # a copy: a view would keep the chunk alive
    return F.silu(conv1d(x)[..., kernel - 1 : kernel - 1 + length])


# --------------------------------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------------------------------


def _zero_padding(hidden_states, attention_mask):
    """Zero the padding positions so that they add nothing to the convolution or the state of real tokens."""
    if attention_mask is None:
        return hidden_states
    return hidden_states * attention_mask[:, :, None].to(hidden_states.dtype)


class MambaRMSNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        dtype = hidden_states.dtype
        hidden_states = hidden_states.float()
        hidden_states = hidden_states * torch.rsqrt(hidden_states.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * hidden_states.to(dtype)


class MambaRMSNormGated(nn.Module):
    """Mamba-2's output norm: RMS norm per group of `y * silu(z)`."""

    def __init__(self, hidden_size, group_size, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.group_size = group_size
        self.variance_epsilon = eps

    def forward(self, hidden_states, gate):
        dtype = hidden_states.dtype
        hidden_states = hidden_states.float() * F.silu(gate.float())
        grouped = hidden_states.view(*hidden_states.shape[:-1], -1, self.group_size)
        grouped = grouped * torch.rsqrt(grouped.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * grouped.view_as(hidden_states).to(dtype)


class MambaMixer(nn.Module):
    """Mamba-1 mixer: in_proj -> causal conv -> selective scan gated by z -> out_proj."""

    def __init__(self, config):
        super().__init__()
        inner, self.state_size, self.time_step_rank = config.intermediate_size, config.state_size, config.time_step_rank
        self.conv_kernel = config.conv_kernel
        self.in_proj = nn.Linear(config.hidden_size, 2 * inner, bias=config.use_bias)
        self.conv1d = nn.Conv1d(
            inner, inner, config.conv_kernel, groups=inner, padding=config.conv_kernel - 1, bias=config.use_conv_bias
        )
        self.x_proj = nn.Linear(inner, self.time_step_rank + 2 * self.state_size, bias=False)
        self.dt_proj = nn.Linear(self.time_step_rank, inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(inner, self.state_size))
        self.D = nn.Parameter(torch.empty(inner))
        self.out_proj = nn.Linear(inner, config.hidden_size, bias=config.use_bias)

    def forward(self, hidden_states, attention_mask=None, cache=None):
        xz = self.in_proj(_zero_padding(hidden_states, attention_mask)).transpose(1, 2)
        x, z = xz.chunk(2, dim=1)
        x = _conv_silu(self.conv1d, x, cache)
        x = _zero_padding(x.transpose(1, 2), attention_mask)
        dt, B, C = torch.split(self.x_proj(x), [self.time_step_rank, self.state_size, self.state_size], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # the bias is added inside the scan, in float32
        y = _selective_scan(
            x.transpose(1, 2),
            dt.transpose(1, 2),
            -torch.exp(self.A_log.float()),
            B.transpose(1, 2),
            C.transpose(1, 2),
            self.D,
            z,
            self.dt_proj.bias,
            cache=cache,
        )
        return self.out_proj(y.transpose(1, 2).to(hidden_states.dtype))


class Mamba2Mixer(nn.Module):
    """Mamba-2 mixer: in_proj -> [z | conv(x, B, C) | dt] -> SSD scan -> gated group RMS norm -> out_proj."""

    def __init__(self, config):
        super().__init__()
        inner, self.state_size = config.intermediate_size, config.state_size
        self.num_heads, self.head_dim, self.n_groups = config.num_heads, config.head_dim, config.n_groups
        self.chunk_size = config.chunk_size
        self.conv_dim = inner + 2 * self.n_groups * self.state_size
        self.in_proj = nn.Linear(config.hidden_size, inner + self.conv_dim + self.num_heads, bias=config.use_bias)
        self.conv1d = nn.Conv1d(
            self.conv_dim,
            self.conv_dim,
            config.conv_kernel,
            groups=self.conv_dim,
            padding=config.conv_kernel - 1,
            bias=config.use_conv_bias,
        )
        self.dt_bias = nn.Parameter(torch.empty(self.num_heads))
        self.A_log = nn.Parameter(torch.empty(self.num_heads))
        self.D = nn.Parameter(torch.empty(self.num_heads))
        self.norm = MambaRMSNormGated(inner, group_size=inner // self.n_groups, eps=config.layer_norm_epsilon)
        self.out_proj = nn.Linear(inner, config.hidden_size, bias=config.use_bias)

    def forward(self, hidden_states, attention_mask=None, cache=None):
        batch, length, _ = hidden_states.shape
        projected = self.in_proj(_zero_padding(hidden_states, attention_mask))
        z, xBC, dt = projected.split([self.norm.weight.shape[0], self.conv_dim, self.num_heads], dim=-1)
        xBC = _conv_silu(self.conv1d, xBC.transpose(1, 2), cache).transpose(1, 2)
        x, B, C = _zero_padding(xBC, attention_mask).split(
            [self.num_heads * self.head_dim, self.n_groups * self.state_size, self.n_groups * self.state_size], dim=-1
        )
        heads_per_group = self.num_heads // self.n_groups
        B = B.reshape(batch, length, self.n_groups, self.state_size).repeat_interleave(heads_per_group, dim=2)
        C = C.reshape(batch, length, self.n_groups, self.state_size).repeat_interleave(heads_per_group, dim=2)
        y = _ssd_scan(
            x.reshape(batch, length, self.num_heads, self.head_dim),
            F.softplus(dt.float() + self.dt_bias.float()),
            -torch.exp(self.A_log.float()),
            B,
            C,
            self.D,
            self.chunk_size,
            cache=cache,
        )
        y = self.norm(y.reshape(batch, length, -1), z)
        return self.out_proj(y.to(hidden_states.dtype))


class MambaBlock(GradientCheckpointingLayer):
    def __init__(self, config):
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = MambaRMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.mixer = MambaMixer(config) if config.backbone == "mamba" else Mamba2Mixer(config)

    def forward(self, hidden_states, attention_mask=None, cache=None):
        residual = hidden_states.float() if self.residual_in_fp32 else hidden_states
        hidden_states = self.mixer(self.norm(hidden_states.to(self.norm.weight.dtype)), attention_mask, cache)
        return residual + hidden_states


class MambaBackbone(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([MambaBlock(config) for _ in range(config.num_hidden_layers)])
        self.norm_f = MambaRMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)

    def forward(self, inputs_embeds, attention_mask=None, output_hidden_states=False, caches=None):
        hidden_states = inputs_embeds
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        for i, layer in enumerate(self.layers):
            hidden_states = layer(hidden_states, attention_mask, None if caches is None else caches[i])
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        hidden_states = self.norm_f(hidden_states.to(self.norm_f.weight.dtype))
        return hidden_states, all_hidden_states


# --------------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class MambaRetrievalOutput(ModelOutput):
    """
    last_hidden_state: (batch, length, hidden) final-layer states after the final norm (what sentence-transformers
        pools).
    sentence_embedding: (batch, hidden) float32 state at the last real token, L2-normalised if `config.normalize`.
    hidden_states: with `output_hidden_states=True`, the embeddings and each layer's output (before the final norm).
    """

    last_hidden_state: Optional[torch.FloatTensor] = None
    sentence_embedding: Optional[torch.FloatTensor] = None
    hidden_states: Optional[tuple] = None


def last_token_index(attention_mask):
    """Index of the last real token of each row, for right or left padding alike."""
    length = attention_mask.shape[1]
    return length - 1 - attention_mask.flip(1).to(torch.int8).argmax(dim=1)


class MambaRetrievalPreTrainedModel(PreTrainedModel):
    config_class = MambaRetrievalConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["MambaBlock"]

    @torch.no_grad()
    def _init_weights(self, module):
        """mamba_ssm's initialisation; `init.*` leaves parameters that were loaded from a checkpoint untouched."""
        config = self.config
        if isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=config.initializer_range)
        elif isinstance(module, (nn.Linear, nn.Conv1d)):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.weight[0].numel()) if isinstance(module, nn.Conv1d) else 0.0
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, (MambaRMSNorm, MambaRMSNormGated)):
            init.ones_(module.weight)
        if isinstance(module, (MambaMixer, Mamba2Mixer)):
            # out_proj scaled by 1/sqrt(n_layer) (mamba_ssm's rescale_prenorm_residual), written in one step so
            # that a second call cannot shrink it again
            bound = 1 / math.sqrt(module.out_proj.in_features) / math.sqrt(config.num_hidden_layers)
            init.uniform_(module.out_proj.weight, -bound, bound)
            init.ones_(module.D)
            dt = torch.exp(
                torch.rand(module.D.shape[0] if isinstance(module, MambaMixer) else module.num_heads)
                * (math.log(0.1) - math.log(0.001))
                + math.log(0.001)
            ).clamp(min=1e-4)
            inv_softplus_dt = dt + torch.log(-torch.expm1(-dt))
            if isinstance(module, MambaMixer):
                init.copy_(
                    module.A_log, torch.log(torch.arange(1, module.state_size + 1).float()).expand_as(module.A_log)
                )
                std = module.time_step_rank**-0.5
                init.uniform_(module.dt_proj.weight, -std, std)
                init.copy_(module.dt_proj.bias, inv_softplus_dt)
            else:
                init.copy_(module.A_log, torch.log(torch.empty(module.num_heads).uniform_(1, 16)))
                init.copy_(module.dt_bias, inv_softplus_dt)


class MambaForRetrieval(MambaRetrievalPreTrainedModel):
    """Bi-encoder: the embedding of a text is the final state at its last real token (the EOS the tokenizer adds).

    Long inputs: without gradients, a sequence longer than `stream_chunk_size` tokens runs in chunks of that many
    tokens through all layers, carrying each layer's convolution and SSM state across chunk borders, so activation
    memory does not grow with the length (the result equals the one-pass result up to float rounding). Set it on
    the model (`model.stream_chunk_size = 8192`, or `None` for one pass); it is not a config field. With
    `output_token_states=False` the model also skips `last_hidden_state`, and a document of any length encodes in
    bounded memory.
    """

    stream_chunk_size = 512  # measured by `mamba-retrieval bench`: flat tokens/s from 512 tokens up, least memory

    def __init__(self, config):
        super().__init__(config)
        self.backbone = MambaBackbone(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.backbone.embeddings

    def set_input_embeddings(self, value):
        self.backbone.embeddings = value

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        output_hidden_states=None,
        return_dict=None,
        output_token_states=True,
    ):
        attention_mask = self._check_inputs(input_ids, attention_mask, inputs_embeds)
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else (self.config.output_hidden_states)
        )
        length = attention_mask.shape[1]
        chunk = self.stream_chunk_size
        if chunk is not None and length > chunk and not output_hidden_states and not torch.is_grad_enabled():
            last_hidden_state, embedding = self._forward_streaming(
                input_ids, inputs_embeds, attention_mask, chunk, output_token_states
            )
            hidden_states = None
        else:
            if inputs_embeds is None:
                inputs_embeds = self.backbone.embeddings(input_ids)
            # Mask only when there is padding: an all-ones mask changes nothing but costs a multiply per layer.
            mask = None if bool(attention_mask.all()) else attention_mask
            last_hidden_state, hidden_states = self.backbone(inputs_embeds, mask, output_hidden_states)
            rows = torch.arange(last_hidden_state.shape[0], device=last_hidden_state.device)
            embedding = last_hidden_state[rows, last_token_index(attention_mask)].float()
            if not output_token_states:
                last_hidden_state = None
        if self.config.normalize:
            embedding = F.normalize(embedding, p=2, dim=-1)
        output = MambaRetrievalOutput(last_hidden_state, embedding, hidden_states)
        return output if return_dict is not False else output.to_tuple()

    def _forward_streaming(self, input_ids, inputs_embeds, attention_mask, chunk, output_token_states):
        """One pass over `chunk`-token pieces with states carried between them; returns (last_hidden_state or None,
        the un-normalised embedding at each row's last real token)."""
        length = attention_mask.shape[1]
        last_index = last_token_index(attention_mask)
        caches = [{} for _ in self.backbone.layers]
        pieces, embedding = [], None
        for start in range(0, length, chunk):
            end = min(start + chunk, length)
            embeds = (
                self.backbone.embeddings(input_ids[:, start:end])
                if inputs_embeds is None
                else inputs_embeds[:, start:end]
            )
            piece_mask = attention_mask[:, start:end]
            mask = None if bool(piece_mask.all()) else piece_mask
            states, _ = self.backbone(embeds, mask, False, caches)
            if embedding is None:
                embedding = states.new_zeros(states.shape[0], states.shape[2], dtype=torch.float32)
            here = (last_index >= start) & (last_index < end)
            rows = here.nonzero().flatten()
            embedding[rows] = states[rows, last_index[rows] - start].float()
            if output_token_states:
                pieces.append(states)
        return (torch.cat(pieces, dim=1) if output_token_states else None), embedding

    def _check_inputs(self, input_ids, attention_mask, inputs_embeds):
        """Turn bad input into errors that say what to fix, before it reaches an opaque index error. Returns the
        attention mask (all ones when none was given)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must have shape (batch, length), got {tuple(input_ids.shape)}.")
            if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= self.config.vocab_size):
                raise ValueError(
                    f"input_ids must lie in [0, {self.config.vocab_size}); got values in "
                    f"[{int(input_ids.min())}, {int(input_ids.max())}]. Is this the model's own tokenizer?"
                )
        given = input_ids if input_ids is not None else inputs_embeds
        batch, length = given.shape[:2]
        if batch == 0 or length == 0:
            raise ValueError(
                f"Nothing to embed: the batch has shape ({batch}, {length}). Tokenize at least one text "
                "(an empty string still gives one token, the EOS)."
            )
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, dtype=torch.long, device=given.device)
        elif attention_mask.shape != (batch, length):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(batch, length)}.")
        empty_rows = (attention_mask.sum(dim=1) == 0).nonzero().flatten().tolist()
        if empty_rows:
            raise ValueError(f"Rows {empty_rows} of the batch have no real token (attention_mask all zero).")
        return attention_mask


# --------------------------------------------------------------------------------------------------------------------
# SPScanner: sentence scoring in one causal pass
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class SentenceScoringOutput(ModelOutput):
    """
    loss: with `labels`, the BCE loss over real sentences with `pos_weight = #negatives / #positives` of the batch.
    logits: (batch, n_sentences) float32 score of each sentence unit (the head at its last token); padding is -inf.
    sentence_mask: (batch, n_sentences) True for real sentences.
    """

    loss: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None
    sentence_mask: Optional[torch.BoolTensor] = None


def sentence_bce_loss(logits, labels, sentence_mask):
    """SPScanner's loss: binary cross-entropy over the real sentences of the batch, positives weighted by
    #negatives / #positives (1 when the batch has no positive, so that the weight stays finite)."""
    logits, labels = logits[sentence_mask], labels[sentence_mask].float()
    positives = labels.sum()
    pos_weight = (labels.numel() - positives) / positives.clamp(min=1)
    return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)


class MambaForSentenceScoring(MambaRetrievalPreTrainedModel):
    """SPScanner: a Mamba-2 backbone reads `question + "\\n" + document` once; `binary_head` (Linear(d_model, 1))
    scores the final-layer state at the last token of every sentence unit. The language-model head of the
    checkpoint is not part of the model: it is never computed."""

    config_class = MambaScannerConfig

    def __init__(self, config):
        super().__init__(config)
        self.backbone = MambaBackbone(config)
        self.binary_head = nn.Linear(config.hidden_size, 1, bias=True)
        self.post_init()

    def get_input_embeddings(self):
        return self.backbone.embeddings

    def set_input_embeddings(self, value):
        self.backbone.embeddings = value

    def forward(self, input_ids=None, sentence_end_positions=None, attention_mask=None, labels=None, return_dict=None):
        """
        input_ids: (batch, length) tokens of `question + suffix + document`, right-padded.
        sentence_end_positions: (batch, n_sentences) index of each sentence unit's last token in `input_ids`;
            negative entries are padding.
        labels: optional (batch, n_sentences) 0/1 relevance of each sentence, for the training loss.
        """
        positions, sentence_mask = self._check_scoring_inputs(input_ids, sentence_end_positions, attention_mask)
        mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask
        hidden_states, _ = self.backbone(self.backbone.embeddings(input_ids), mask)
        rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)[:, None]
        # Only the sentence ends go through the head: (batch, n_sentences, hidden) -> (batch, n_sentences).
        logits = self.binary_head(hidden_states[rows, positions]).squeeze(-1).float()
        logits = logits.masked_fill(~sentence_mask, -torch.inf)
        loss = sentence_bce_loss(logits, labels.to(logits.device), sentence_mask) if labels is not None else None
        output = SentenceScoringOutput(loss, logits, sentence_mask)
        return output if return_dict is not False else output.to_tuple()

    def _check_scoring_inputs(self, input_ids, sentence_end_positions, attention_mask):
        if input_ids is None or input_ids.dim() != 2 or input_ids.numel() == 0:
            shape = None if input_ids is None else tuple(input_ids.shape)
            raise ValueError(f"input_ids must be a non-empty (batch, length) tensor, got {shape}.")
        if int(input_ids.min()) < 0 or int(input_ids.max()) >= self.config.vocab_size:
            raise ValueError(
                f"input_ids must lie in [0, {self.config.vocab_size}); got values in "
                f"[{int(input_ids.min())}, {int(input_ids.max())}]. Is this the model's own tokenizer?"
            )
        if sentence_end_positions is None:
            raise ValueError(
                "Pass sentence_end_positions: the index of each sentence unit's last token "
                "(mamba_retrieval.modeling.scanner.segmentation computes them)."
            )
        sentence_end_positions = torch.as_tensor(sentence_end_positions, device=input_ids.device)
        if sentence_end_positions.dim() == 1:
            sentence_end_positions = sentence_end_positions[None]
        if sentence_end_positions.dim() != 2 or sentence_end_positions.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"sentence_end_positions must have shape (batch={input_ids.shape[0]}, n_sentences), "
                f"got {tuple(sentence_end_positions.shape)}."
            )
        length = input_ids.shape[1]
        if int(sentence_end_positions.max()) >= length:
            raise ValueError(
                f"sentence_end_positions go up to {int(sentence_end_positions.max())}, beyond the "
                f"{length} tokens of input_ids."
            )
        sentence_mask = sentence_end_positions >= 0
        positions = sentence_end_positions.clamp(min=0)
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}, expected {tuple(input_ids.shape)}."
                )
            rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None]
            if not bool(attention_mask[rows, positions].bool()[sentence_mask].all()):
                raise ValueError("Some sentence_end_positions point at padding (attention_mask 0).")
        return positions, sentence_mask
