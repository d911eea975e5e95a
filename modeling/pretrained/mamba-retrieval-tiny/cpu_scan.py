"""Fused Mamba-1 selective scan for CPU (numba), forward and backward.

Same semantics as `selective_scan_reference` (mamba_ssm's `selective_scan_fn` with `delta_softplus=True`):
    dt = softplus(delta + delta_bias); h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t;
    y_t = <h_t, C_t> + D u_t; out_t = y_t * silu(z_t).
The recurrence is the fused kernel; softplus and the silu gate are element-wise torch ops around it (vectorised by
torch, differentiated by autograd). The state is kept per (channel, state) in float32 and the decay exp(dt_t A) is
computed on the fly, so no (batch, channels, length, state) tensor exists. Work is split over blocks of channels
(numba `prange`); inside a block the channel loop is innermost and contiguous, so LLVM vectorises it, exp included
(`_exp` below: libm's scalar exp would not vectorise). The backward pass recomputes the forward of one channel block
at a time, keeping that block's states, (length, state, CHANNEL_BLOCK) floats per worker, and writes dB, dC partial
sums per block that are added up afterwards (no two workers write the same memory).

numba ships wheels for every platform torch does, so `pip install mamba-retrieval` needs no compiler. Without
numba, `fused_scan_available()` is False and the model runs its chunked PyTorch scan.
"""

import logging
import threading

import numpy as np
import torch
import torch.nn.functional as F

try:
    import llvmlite.ir
    import numba
    from numba import njit, prange, types
    from numba.extending import intrinsic
except ImportError:  # the model falls back to its chunked PyTorch scan
    numba = None

CHANNEL_BLOCK = 64  # channels per parallel work item: the block's states (16 x 64 floats) stay in L1
COMPILE_NOTICE_AFTER_S = 2.0  # loading a kernel from numba's cache takes well under this; compiling it, ~20 s
logger = logging.getLogger(__name__)


def fused_scan_available():
    return numba is not None


if numba is not None:

    @intrinsic
    def _int_bits_as_float(typingctx, bits):
        """Reinterpret int32 bits as float32 (a free bitcast, vectorisable)."""

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], llvmlite.ir.FloatType())

        return types.float32(types.int32), codegen

    _LOG2E, _LN2_HI, _LN2_LO = np.float32(1.44269504088896341), np.float32(0.693359375), np.float32(-2.12194440e-4)
    _P0, _P1, _P2 = np.float32(1.9875691500e-4), np.float32(1.3981999507e-3), np.float32(8.3334519073e-3)
    _P3, _P4, _P5 = np.float32(4.1665795894e-2), np.float32(1.6666665459e-1), np.float32(5.0000001201e-1)
    _MIN_X, _ONE, _HALF = np.float32(-87.0), np.float32(1.0), np.float32(0.5)

    @njit(inline="always", fastmath=True)
    def _exp(x):
        """exp of a float32 x <= 0 (Cephes expf: 2^k * polynomial, about 1 ulp); exp(x < -87) = exp(-87)
        (about 1.6e-38: a vanished state)."""
        x = max(x, _MIN_X)
        k = np.floor(x * _LOG2E + _HALF)
        r = x - k * _LN2_HI - k * _LN2_LO
        p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
        p = p * r * r + r + _ONE
        return p * _int_bits_as_float((np.int32(k) + np.int32(127)) << np.int32(23))

    @njit(parallel=True, fastmath=True, cache=True)
    def _forward_kernel(u, dt, AT, B, C, D, state, y):
        """u, dt, y: (batch, length, channels); AT: (state, channels); B, C: (batch, length, state);
        state: (batch, state, channels), read as the initial state and overwritten with the final one.
        y_t = <h_t, C_t> + D u_t. Inner loops run over 1-D views of one channel block (what LLVM vectorises)."""
        batch, length, channels = u.shape
        nstate = AT.shape[0]
        nblocks = (channels + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
        for job in prange(batch * nblocks):
            b = job // nblocks
            d0 = (job % nblocks) * CHANNEL_BLOCK
            d1 = min(d0 + CHANNEL_BLOCK, channels)
            w = d1 - d0
            h = state[b, :, d0:d1].copy()
            A = AT[:, d0:d1].copy()
            D_blk = D[d0:d1]
            acc = np.empty(w, dtype=np.float32)
            dtu = np.empty(w, dtype=np.float32)
            for t in range(length):
                u_t, dt_t = u[b, t, d0:d1], dt[b, t, d0:d1]
                for i in range(w):
                    acc[i] = D_blk[i] * u_t[i]
                    dtu[i] = dt_t[i] * u_t[i]
                for n in range(nstate):
                    bn, cn = B[b, t, n], C[b, t, n]
                    h_n, A_n = h[n], A[n]
                    for i in range(w):
                        value = _exp(dt_t[i] * A_n[i]) * h_n[i] + dtu[i] * bn
                        h_n[i] = value
                        acc[i] += value * cn
                y_t = y[b, t, d0:d1]
                for i in range(w):
                    y_t[i] = acc[i]
            state[b, :, d0:d1] = h

    @njit(parallel=True, fastmath=True, cache=True)
    def _backward_kernel(u, dt, AT, B, C, D, dy, du, ddt, dAT, dB_part, dC_part, dD):
        """Gradients of `_forward_kernel` from a zero initial state. dB_part, dC_part: (blocks, batch, length, state)
        partial sums, one slice per channel block."""
        batch, length, channels = u.shape
        nstate = AT.shape[0]
        nblocks = (channels + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
        for blk in prange(nblocks):
            d0 = blk * CHANNEL_BLOCK
            d1 = min(d0 + CHANNEL_BLOCK, channels)
            w = d1 - d0
            A = AT[:, d0:d1].copy()
            D_blk = D[d0:d1]
            dA = np.zeros((nstate, w), dtype=np.float32)
            dD_blk = np.zeros(w, dtype=np.float32)
            hs = np.empty((length + 1, nstate, w), dtype=np.float32)  # the block's states, h_{-1} = 0 first
            dh = np.empty((nstate, w), dtype=np.float32)
            dtu = np.empty(w, dtype=np.float32)
            g_du = np.empty(w, dtype=np.float32)  # gradient of dt_t * u_t
            g_dt = np.empty(w, dtype=np.float32)  # gradient of dt_t through the decay
            for b in range(batch):
                hs[0] = 0.0
                for t in range(length):
                    u_t, dt_t = u[b, t, d0:d1], dt[b, t, d0:d1]
                    for i in range(w):
                        dtu[i] = dt_t[i] * u_t[i]
                    for n in range(nstate):
                        bn = B[b, t, n]
                        h_prev, h_next, A_n = hs[t, n], hs[t + 1, n], A[n]
                        for i in range(w):
                            h_next[i] = _exp(dt_t[i] * A_n[i]) * h_prev[i] + dtu[i] * bn
                dh[:] = 0.0
                for t in range(length - 1, -1, -1):
                    u_t, dt_t, dy_t = u[b, t, d0:d1], dt[b, t, d0:d1], dy[b, t, d0:d1]
                    for i in range(w):
                        g_du[i] = 0.0
                        g_dt[i] = 0.0
                        dD_blk[i] += dy_t[i] * u_t[i]
                        dtu[i] = dt_t[i] * u_t[i]
                    for n in range(nstate):
                        bn, cn = B[b, t, n], C[b, t, n]
                        h_prev, h_now, A_n, dh_n, dA_n = hs[t, n], hs[t + 1, n], A[n], dh[n], dA[n]
                        sum_b = np.float32(0.0)
                        sum_c = np.float32(0.0)
                        for i in range(w):
                            sum_c += dy_t[i] * h_now[i]
                            grad_h = dh_n[i] + dy_t[i] * cn
                            sum_b += grad_h * dtu[i]
                            g_du[i] += grad_h * bn
                            decay = _exp(dt_t[i] * A_n[i])
                            through = grad_h * h_prev[i] * decay
                            g_dt[i] += through * A_n[i]
                            dA_n[i] += through * dt_t[i]
                            dh_n[i] = grad_h * decay
                        dB_part[blk, b, t, n] = sum_b
                        dC_part[blk, b, t, n] = sum_c
                    du_t, ddt_t = du[b, t, d0:d1], ddt[b, t, d0:d1]
                    for i in range(w):
                        du_t[i] = g_du[i] * dt_t[i] + dy_t[i] * D_blk[i]
                        ddt_t[i] = g_du[i] * u_t[i] + g_dt[i]
            dAT[:, d0:d1] = dA
            dD[d0:d1] = dD_blk


def _first_call(kernel, what, *args):
    """Call `kernel`. Its first call in a process either loads its machine code from numba's cache (fast) or, on a
    new machine or numba version, compiles it (~20 s, the first search sat silent at "Batches 0/2"): if the call
    is still running after COMPILE_NOTICE_AFTER_S, say once what is happening."""
    if kernel.signatures:  # compiled or loaded in this process already
        return kernel(*args)
    notice = threading.Timer(
        COMPILE_NOTICE_AFTER_S,
        logger.warning,
        [
            f"compiling the fused CPU scan ({what}) for this machine with numba: about 20 s, once; later runs load it "
            "from numba's cache"
        ],
    )
    notice.daemon = True
    notice.start()
    try:
        return kernel(*args)
    finally:
        notice.cancel()


def _numpy(tensor):
    return tensor.detach().to(torch.float32).contiguous().numpy()


def _blc(tensor):
    """(batch, x, length) -> contiguous float32 (batch, length, x) numpy (free when the tensor is a transposed
    view of a contiguous one, as in the mixer)."""
    return _numpy(tensor.transpose(1, 2))


def _torch_bxl(array):
    """numpy (batch, length, x) -> torch (batch, x, length) view."""
    return torch.from_numpy(array).transpose(1, 2)


def _scan_core(u, dt, A, B, C, D, initial_state=None):
    """y = scan + D u, and the final state (batch, channels, state); all float32."""
    batch, channels, length = u.shape
    state = (
        np.zeros((batch, A.shape[1], channels), dtype=np.float32)
        if initial_state is None
        else _numpy(initial_state.transpose(1, 2)).copy()
    )
    y = np.empty((batch, length, channels), dtype=np.float32)
    _first_call(_forward_kernel, "forward", _blc(u), _blc(dt), _numpy(A.t()), _blc(B), _blc(C), _numpy(D), state, y)
    return _torch_bxl(y), torch.from_numpy(state).transpose(1, 2)


class _FusedScanCore(torch.autograd.Function):
    """The recurrence y = scan(u, dt, A, B, C) + D u in float32; softplus and the gate stay outside."""

    @staticmethod
    def forward(ctx, u, dt, A, B, C, D):
        y, _ = _scan_core(u, dt, A, B, C, D)
        ctx.save_for_backward(u, dt, A, B, C, D)
        return y

    @staticmethod
    def backward(ctx, dy):
        u, dt, A, B, C, D = ctx.saved_tensors
        batch, channels, length = u.shape
        nstate = A.shape[1]
        nblocks = (channels + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
        du, ddt = (np.empty((batch, length, channels), np.float32) for _ in range(2))
        dAT, dD = np.empty((nstate, channels), np.float32), np.empty(channels, np.float32)
        dB_part, dC_part = (np.empty((nblocks, batch, length, nstate), np.float32) for _ in range(2))
        _first_call(
            _backward_kernel,
            "backward, for training",
            *(_blc(u), _blc(dt), _numpy(A.t()), _blc(B), _blc(C), _numpy(D), _blc(dy)),
            *(du, ddt, dAT, dB_part, dC_part, dD),
        )
        return (
            _torch_bxl(du),
            _torch_bxl(ddt),
            torch.from_numpy(dAT).t(),
            _torch_bxl(dB_part.sum(0)),
            _torch_bxl(dC_part.sum(0)),
            torch.from_numpy(dD),
        )


def fused_selective_scan(u, delta, A, B, C, D, z, delta_bias, initial_state=None, return_final_state=False):
    """`selective_scan_reference` on CPU tensors, fused. Differentiable (w.r.t. all inputs) when called without
    `initial_state`/`return_final_state`; with them (chunked streaming) it is for inference only.

    u, delta, z: (batch, channels, length); A: (channels, state); B, C: (batch, state, length); D, delta_bias:
    (channels,); initial_state: (batch, channels, state) float32. Returns out in u's dtype, and the final state.
    """
    dt = F.softplus(delta.float() + delta_bias.float()[:, None])
    core = (u.float(), dt, A.float(), B.float(), C.float(), D.float())
    if initial_state is None and not return_final_state:
        y = _FusedScanCore.apply(*core)
    elif torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias)):
        raise RuntimeError(
            "fused_selective_scan with a carried state is inference-only; run it under "
            "torch.no_grad() or without initial_state/return_final_state."
        )
    else:
        y, state = _scan_core(*core, initial_state=initial_state)
    out = (y * F.silu(z.float())).to(u.dtype)
    return (out, state) if return_final_state else out
