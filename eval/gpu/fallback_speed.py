"""Speed of the Mamba-1 fallback scans: `selective_scan_chunked` against the per-token `selective_scan_reference`.

Without mamba_ssm's CUDA op, the model runs the chunked scan; before it, it ran the reference, a Python loop over the
tokens (one set of kernel launches per token per layer). This times both on one layer of the 130m shape (channels
1536, state 16, batch 1, float32, no gradients unless `--backward`), interleaved repeat by repeat after one warm-up
each, and prints both median times and their ratio (the target on a GPU: the chunked scan >= 20x the loop at 2,048
tokens). Inputs follow the model's initialisation (A = -1..-16, dt in [0.001, 0.1]): decays far from that range can
hit the CPU's slow denormal arithmetic and would time something else.

    python eval/gpu/fallback_speed.py --device cuda --length 2048 --output fallback_speed.json
"""

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch

from mamba_retrieval.modeling.data_files import write_text_atomic
from mamba_retrieval.modeling.modeling_mamba_retrieval import selective_scan_chunked, selective_scan_reference

CHANNELS, STATE = 1536, 16  # mamba-130m: d_inner = 2 x 768, d_state = 16


def scan_inputs(length, device, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    dt = torch.exp(torch.rand(CHANNELS, generator=g) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
    inputs = dict(
        u=torch.randn(batch, CHANNELS, length, generator=g),
        delta=0.1 * torch.randn(batch, CHANNELS, length, generator=g),
        A=-torch.arange(1, STATE + 1, dtype=torch.float32).expand(CHANNELS, STATE).contiguous(),
        B=torch.randn(batch, STATE, length, generator=g),
        C=torch.randn(batch, STATE, length, generator=g),
        D=torch.ones(CHANNELS),
        z=torch.randn(batch, CHANNELS, length, generator=g),
        delta_bias=dt + torch.log(-torch.expm1(-dt)),  # softplus^-1(dt), as the model initialises dt_proj.bias
    )
    return {name: t.to(device) for name, t in inputs.items()}


def timed(scan, inputs, backward, device):
    """Seconds for one call (forward, or forward and backward), the device synchronised at both ends."""
    if backward:
        inputs = {name: t.clone().requires_grad_() for name, t in inputs.items()}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with torch.set_grad_enabled(backward):
        out = scan(**inputs)
        if backward:
            out.sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="torch device to time on: cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--length", type=int, default=2048, help="tokens in the sequence (default 2048)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each scan after one warm-up (default 3)")
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="chunk of the chunked scan (default: its own, by memory)"
    )
    parser.add_argument("--backward", action="store_true", help="time forward + backward instead of forward only")
    parser.add_argument("--output", default=None, help="also write the numbers to this JSON file (replaced atomically)")
    args = parser.parse_args(argv)
    if args.length < 1 or args.repeats < 1 or (args.chunk_size is not None and args.chunk_size < 1):
        parser.error("--length, --repeats and --chunk-size must be positive integers")
    try:
        device = torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device {args.device!r} is not a torch device ({error})")
    if args.output and not Path(args.output).resolve().parent.is_dir():
        parser.error(f"--output {args.output}: its folder does not exist; create it first")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA GPU here; use --device cpu")

    inputs = scan_inputs(args.length, device)
    scans = {
        "reference": selective_scan_reference,
        "chunked": lambda **kw: selective_scan_chunked(**kw, chunk_size=args.chunk_size),
    }
    times = {name: [] for name in scans}
    for scan in scans.values():  # warm-up: allocator, kernel caches, first-call dispatch
        timed(scan, inputs, args.backward, device)
    for _ in range(args.repeats):  # interleaved, so that a burst of load on a shared machine hits both
        for name, scan in scans.items():
            times[name].append(timed(scan, inputs, args.backward, device))

    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["reference"] / medians["chunked"]
    what = "forward+backward" if args.backward else "forward"
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(
        f"Mamba-1 scan, {what}, {device} ({device_name}, {torch.get_num_threads()} CPU threads), "
        f"batch 1 x channels {CHANNELS} x state {STATE} x length {args.length}, float32, median of {args.repeats}:"
    )
    print(f"  per-token reference {medians['reference'] * 1000:10.1f} ms")
    print(f"  chunked             {medians['chunked'] * 1000:10.1f} ms")
    print(f"  chunked is {ratio:.2f}x the reference's speed")
    if args.output:
        record = dict(
            device=str(device),
            device_name=device_name,
            cpu_threads=torch.get_num_threads(),
            torch=torch.__version__,
            timed=what,
            shape=dict(batch=1, channels=CHANNELS, state=STATE, length=args.length),
            chunk_size=args.chunk_size,
            repeats=args.repeats,
            seconds=times,
            median_seconds=medians,
            speedup=ratio,
        )
        write_text_atomic(args.output, json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
