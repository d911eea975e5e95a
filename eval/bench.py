"""`mamba-retrieval bench`: encode speed and memory against length (the Mamba Retriever paper's Figure 1), here.

Each model runs in its own child process (so one model's memory cannot hide in another's numbers), all lengths in
increasing order, on random documents (`--batch-sizes` of them per call, default 1; random weights, random token ids:
timing does not depend on either), on `--device` (cpu, or cuda: timings between cuda synchronizations). Models, all
random and of the 130m shape unless said otherwise:

    mamba         MambaForRetrieval, Mamba-1 (fused CPU scan / CUDA kernels, chunked streaming)
    mamba2        MambaForRetrieval, Mamba-2
    mamba-stock   transformers' MambaModel (its own CPU path without mamba_ssm: a Python loop over tokens)
    mamba2-stock  transformers' Mamba2Model
    bert          transformers' BertModel, BERT-base shape, SDPA attention, max_position_embeddings raised

Memory on CPU is the peak resident set size (RSS, sampled every 2 ms by a thread in the child, psutil) while
encoding, minus the RSS after the model was built and warmed up: activation memory over the loaded weights. On cuda
it is torch.cuda.max_memory_allocated (reset before each length), total and over the allocation after warm-up. A
length is
skipped, with the reason recorded, when the previous length predicts more than `--max-seconds` or more memory than
the machine has (extrapolated with the exponent measured between the last two lengths, 1 before that).

Training rows: fwd+bwd tokens/s of a 14.6M-parameter Mamba-1 (4 layers, d 256, batch 32 x 64 tokens), ours against
stock, and the same for Mamba-2. Long-document row: `--long-tokens N` encodes one N-token document with
`output_token_states=False` (bounded memory) and records the peak total RSS.

`--busy N` runs N busy-loop processes during every timed run (a loaded machine; they end with the run, and on
their own if the bench dies). The first-call row (CPU, on by default): a fresh process builds Mamba-1 and encodes one
`--first-call-tokens` document with `output_token_states=False`, its first call; peak RSS over the built model,
split into anonymous memory and file-backed pages (code of libraries loaded on first use, e.g. LLVM for numba).

Writes `bench.json` and `bench.png` into `--output-dir` and prints a table with ratios against `mamba-stock` and
`bert` from the same run (the machines are shared and noisy: compare ratios, not absolute numbers across runs).
"""

import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

from mamba_retrieval.modeling.data_files import write_text_atomic

ENCODE_MODELS = ("mamba", "mamba2", "mamba-stock", "mamba2-stock", "bert")
TRAIN_MODELS = ("mamba", "mamba-stock", "mamba2", "mamba2-stock")
SHAPE_130M = dict(hidden_size=768, num_hidden_layers=24)
SHAPE_TRAIN = dict(hidden_size=256, num_hidden_layers=4)  # 14.6M parameters with the 50280-row embedding
VOCAB = {"mamba": 50280, "mamba2": 50288}


def flops_per_token(name, length, hidden_size=768, num_hidden_layers=24, state_size=16):
    """Forward FLOPs per token (2 per multiply-add) of the encoders compared at `length` tokens: what bounds the
    speed ratio of two GEMM-bound models. Mamba-1 (130m shape, expand 2): in/x/dt/out projections, the depthwise conv
    and ~9 FLOPs per (channel, state) of the scan; BERT-base (12 layers, 768, FFN 3072): Q/K/V/O and FFN projections
    plus QK^T and AV, 4 * length * 768 per layer. Embedding lookups are free. None for the other models."""
    if name in ("mamba", "mamba-stock"):
        inner, dt_rank = 2 * hidden_size, -(-hidden_size // 16)
        per_layer = (
            2
            * (
                hidden_size * 2 * inner
                + inner * (dt_rank + 2 * state_size)
                + dt_rank * inner
                + inner * hidden_size
                + 4 * inner
            )
            + 9 * inner * state_size
        )
        return num_hidden_layers * per_layer
    if name == "bert":
        width, ffn = 768, 3072
        return 12 * (2 * (4 * width * width + 2 * width * ffn) + 4 * length * width)
    return None


def flop_bound_lines(lengths):
    """BERT/Mamba-1 FLOP ratio per length: the ours/BERT speed ratio reached if both ran at the same FLOP rate."""
    ratio = {length: flops_per_token("bert", length) / flops_per_token("mamba", length) for length in lengths}
    return [f"FLOP ratio BERT-base / Mamba-1 at {length}: {value:.2f}" for length, value in ratio.items()]


# ------------------------------------------------------------------------------------------------------------------
# Child process: build one model, measure it
# ------------------------------------------------------------------------------------------------------------------


def build_model(name, shape, max_length):
    """The named model with random weights, in eval mode; returns (model, forward(input_ids))."""
    # imported here, in the measuring child: the parent process never loads torch or a model
    import torch

    torch.manual_seed(0)
    backbone = "mamba2" if name.startswith("mamba2") else "mamba"
    if name in ("mamba", "mamba2"):
        from mamba_retrieval.modeling.configuration_mamba_retrieval import MambaRetrievalConfig
        from mamba_retrieval.modeling.modeling_mamba_retrieval import MambaForRetrieval

        model = MambaForRetrieval(MambaRetrievalConfig(backbone=backbone, vocab_size=VOCAB[backbone], **shape))
        return model.eval(), lambda ids, **kw: model(input_ids=ids, **kw)
    if name in ("mamba-stock", "mamba2-stock"):
        from transformers import Mamba2Config, Mamba2Model, MambaConfig, MambaModel

        if backbone == "mamba":
            model = MambaModel(MambaConfig(vocab_size=VOCAB[backbone], **shape))
        else:
            model = Mamba2Model(
                Mamba2Config(vocab_size=VOCAB[backbone], num_heads=2 * shape["hidden_size"] // 64, **shape)
            )
        return model.eval(), lambda ids, **kw: model(input_ids=ids, use_cache=False)
    if name == "bert":
        from transformers import BertConfig, BertModel

        # BERT-base shape; position embeddings raised past BERT's 512 so that long documents run at all
        config = BertConfig(max_position_embeddings=max(512, max_length), attn_implementation="sdpa")
        model = BertModel(config, add_pooling_layer=False)
        assert model.config._attn_implementation == "sdpa", model.config._attn_implementation
        return model.eval(), lambda ids, **kw: model(input_ids=ids)
    raise ValueError(f"Unknown model {name!r}; choose from {', '.join(ENCODE_MODELS)}.")


class PeakRSS:
    """Peak resident set size of this process while the block runs, sampled every 2 ms; with `split`, also the
    anonymous and file-backed parts at that peak (Linux /proc/self/status; None elsewhere)."""

    def __init__(self, split=False):
        import psutil

        self.process = psutil.Process()
        self.split = split
        self.peak, self.peak_parts = 0, None

    def _sample_once(self):
        rss = self.process.memory_info().rss
        if rss > self.peak:
            self.peak = rss
            if self.split:
                self.peak_parts = rss_parts()

    def __enter__(self):
        self.running = True
        self._sample_once()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self._sample_once()
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self._sample_once()


def rss_parts():
    """{'anon': bytes, 'file': bytes} of this process's RSS (RssAnon, RssFile of /proc/self/status), or None."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        return {"anon": int(fields["RssAnon"].split()[0]) * 1024, "file": int(fields["RssFile"].split()[0]) * 1024}
    except (OSError, KeyError, ValueError):
        return None


class busy_processes:
    """N CPU-bound busy loops in child processes while the block runs: a loaded machine, for the timings. They are
    killed on the way out (error and Ctrl-C included), and each also stops by itself within about 0.1 s once its
    parent is gone (killed outright, say), so none outlives the bench."""

    LOOP = (
        "import os, sys\nparent = int(sys.argv[1])\nwhile os.getppid() == parent:\n    for _ in range(200000): pass\n"
    )

    def __init__(self, count):
        self.count, self.processes = count, []

    def __enter__(self):
        try:
            for _ in range(self.count):
                self.processes.append(
                    subprocess.Popen([sys.executable, "-c", self.LOOP, str(os.getpid())], stdin=subprocess.DEVNULL)
                )
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait()
        self.processes = []


class Device:
    """Where the timed model runs; on cuda, timings and peak memory are taken between synchronizations."""

    def __init__(self, name):
        import torch

        self.torch, self.name = torch, name
        self.cuda = name == "cuda"

    def synchronize(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def reset_peak(self):
        if self.cuda:
            self.synchronize()
            self.torch.cuda.reset_peak_memory_stats()

    def allocated(self):
        return self.torch.cuda.memory_allocated() if self.cuda else 0

    def peak(self):
        return self.torch.cuda.max_memory_allocated() if self.cuda else 0


def predicted(points, length):
    """Extrapolate (length, value) points to `length` with the exponent of the last two (1 with one point)."""
    import math

    (l1, v1), (l0, v0) = points[-1], (points[-2] if len(points) > 1 else (None, None))
    exponent = 1.0 if l0 is None or v0 <= 0 or v1 <= 0 else max(1.0, math.log(v1 / v0) / math.log(l1 / l0))
    return v1 * (length / l1) ** exponent


def _skip_reason(time_points, memory_points, tokens, max_seconds, available):
    """Why a call of `tokens` tokens (batch x length) is not run, or None: the growth so far predicts more than
    `max_seconds`, or more memory than 80% of `available` bytes."""
    if not time_points:
        return None
    seconds, memory = predicted(time_points, tokens), predicted(memory_points, tokens)
    if seconds > max_seconds:
        return f"predicted {seconds:.0f} s > --max-seconds {max_seconds:.0f}"
    if memory > 0.8 * available:
        return f"predicted {memory / 2**30:.1f} GiB > 80% of the {available / 2**30:.1f} GiB free"
    return None


def measure_encode(name, lengths, repeats, max_seconds, stream_chunk_size, batch_sizes=(1,), device="cpu", busy=0):
    import psutil
    import torch

    device = Device(device)
    model, forward = build_model(name, SHAPE_130M, max(lengths))
    model.to(device.name)
    if stream_chunk_size is not None and hasattr(model, "stream_chunk_size"):
        model.stream_chunk_size = stream_chunk_size or None
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        forward(torch.randint(2, 30000, (1, 64), generator=generator).to(device.name))  # compile / warm up
    device.synchronize()
    rss_loaded, allocated_loaded = psutil.Process().memory_info().rss, device.allocated()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    rows = []
    for batch in batch_sizes:
        time_points, memory_points = [], []  # (tokens in the call, value), for the skip predictions
        for length in lengths:
            available = (  # on cuda: free, plus what torch's caching allocator holds unused
                torch.cuda.mem_get_info()[0] + torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
                if device.cuda
                else psutil.virtual_memory().available
            )
            reason = _skip_reason(time_points, memory_points, batch * length, max_seconds, available)
            if reason:
                rows.append(dict(length=length, batch=batch, skipped=reason))
                continue
            input_ids = torch.randint(2, 30000, (batch, length), generator=generator).to(device.name)
            times = []
            device.reset_peak()
            try:
                with busy_processes(busy), PeakRSS() as peak, torch.inference_mode():
                    for _ in range(repeats):
                        device.synchronize()
                        start = time.perf_counter()
                        forward(input_ids)
                        device.synchronize()
                        times.append(time.perf_counter() - start)
            except torch.cuda.OutOfMemoryError as error:  # the row, not the model's other rows
                del input_ids
                torch.cuda.empty_cache()
                rows.append(dict(length=length, batch=batch, skipped=f"out of GPU memory: {str(error)[:160]}"))
                continue
            best = min(times)
            row = dict(
                length=length,
                batch=batch,
                seconds=best,
                tokens_per_s=batch * length / best,
                seconds_all=times,
                peak_rss_over_loaded_mb=max(0, peak.peak - rss_loaded) / 2**20,
            )
            if device.cuda:
                row.update(
                    peak_gpu_mb=device.peak() / 2**20,
                    peak_gpu_over_loaded_mb=max(0, device.peak() - allocated_loaded) / 2**20,
                )
            rows.append(row)
            over = row["peak_gpu_over_loaded_mb"] if device.cuda else row["peak_rss_over_loaded_mb"]
            time_points.append((batch * length, best))
            memory_points.append((batch * length, max(over * 2**20, 1)))
    return dict(
        model=name,
        device=device.name,
        weights_mb=weights / 2**20,
        rss_loaded_mb=rss_loaded / 2**20,
        **({"gpu_allocated_loaded_mb": allocated_loaded / 2**20} if device.cuda else {}),
        rows=rows,
    )


def measure_training(name, steps, batch=32, length=64, device="cpu", busy=0):
    import torch

    device = Device(device)
    model, forward = build_model(name, SHAPE_TRAIN, length)
    model.to(device.name).train()
    parameters = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)

    def step(rows):
        output = forward(torch.randint(2, 30000, (rows, length), generator=generator).to(device.name))
        output.last_hidden_state.float().square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()

    step(2)  # warm up (compiles the fused kernels)
    device.reset_peak()
    with busy_processes(busy):
        start = time.perf_counter()
        for _ in range(steps):
            step(batch)
        device.synchronize()
        seconds = (time.perf_counter() - start) / steps
    return dict(
        model=name,
        device=device.name,
        parameters=parameters,
        batch=batch,
        length=length,
        steps=steps,
        seconds_per_step=seconds,
        tokens_per_s=batch * length / seconds,
        **({"peak_gpu_mb": device.peak() / 2**20} if device.cuda else {}),
    )


def measure_long_document(tokens, stream_chunk_size):
    import torch

    model, _ = build_model("mamba", SHAPE_130M, 512)
    if stream_chunk_size is not None:  # (0: one pass) else the model's default
        model.stream_chunk_size = stream_chunk_size or None
    input_ids = torch.randint(2, 30000, (1, tokens), generator=torch.Generator().manual_seed(0))
    with PeakRSS() as peak, torch.inference_mode():
        start = time.perf_counter()
        embedding = model(input_ids=input_ids, output_token_states=False).sentence_embedding
        seconds = time.perf_counter() - start
    assert torch.isfinite(embedding).all()
    return dict(
        model="mamba",
        tokens=tokens,
        seconds=seconds,
        tokens_per_s=tokens / seconds,
        stream_chunk_size=model.stream_chunk_size,
        peak_rss_total_mb=peak.peak / 2**20,
    )


def measure_first_call(tokens, stream_chunk_size):
    """A fresh process's first encode (this child's): Mamba-1 built, nothing run yet; one `tokens`-token document
    with output_token_states=False. Everything the first call brings in counts: the scan kernel loaded from numba's
    cache (or compiled), LLVM's code, torch's and the allocator's first buffers."""
    import psutil
    import torch

    model, _ = build_model("mamba", SHAPE_130M, 512)
    if stream_chunk_size is not None:
        model.stream_chunk_size = stream_chunk_size or None
    input_ids = torch.randint(2, 30000, (1, tokens), generator=torch.Generator().manual_seed(0))
    rss_loaded, parts_loaded = psutil.Process().memory_info().rss, rss_parts()
    with PeakRSS(split=True) as peak, torch.inference_mode():
        start = time.perf_counter()
        embedding = model(input_ids=input_ids, output_token_states=False).sentence_embedding
        seconds = time.perf_counter() - start
    assert torch.isfinite(embedding).all()
    result = dict(
        model="mamba",
        tokens=tokens,
        seconds=seconds,
        stream_chunk_size=model.stream_chunk_size,
        rss_loaded_mb=rss_loaded / 2**20,
        peak_rss_over_loaded_mb=max(0, peak.peak - rss_loaded) / 2**20,
    )
    if parts_loaded and peak.peak_parts:
        for part in ("anon", "file"):
            result[f"peak_{part}_over_loaded_mb"] = (peak.peak_parts[part] - parts_loaded[part]) / 2**20
    return result


def worker(job):
    kind = job.pop("kind")
    threads = job.pop("threads", None)
    if threads:  # this child process only: torch's and numba's pools
        import torch

        torch.set_num_threads(threads)
        try:
            import numba

            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        except ImportError:
            pass
    measure = {
        "encode": measure_encode,
        "train": measure_training,
        "long": measure_long_document,
        "first_call": measure_first_call,
    }[kind]
    print("RESULT " + json.dumps(measure(**job)))


def run_child(job, threads=None):
    """Run one measurement in a fresh interpreter; returns its result dict, or {"error": ...}."""
    job = dict(job, threads=threads)
    command = [sys.executable, "-m", "mamba_retrieval.eval.bench", "--worker", json.dumps(job)]
    process = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    for line in process.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {"error": f"exit {process.returncode}: {process.stderr.strip()[-2000:]}"}


# ------------------------------------------------------------------------------------------------------------------
# Parent: run the children, print, write
# ------------------------------------------------------------------------------------------------------------------


def machine_description(device="cpu"):
    """The machine, and the device the models ran on: its name (the GPU's, or the CPU model) and the versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cuda = device == "cuda"
    return dict(
        device=device,
        device_name=torch.cuda.get_device_name() if cuda else cpu,
        cpu=cpu,
        logical_cpus=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if cuda else None,
        python=platform.python_version(),
        platform=platform.platform(),
    )


def memory_mb(row):
    """The row's peak memory over the loaded model: GPU memory on cuda, RSS on CPU."""
    return row.get("peak_gpu_over_loaded_mb", row["peak_rss_over_loaded_mb"])


def format_table(encode, reference_names=("mamba-stock", "bert")):
    def key(row):
        return row["length"], row.get("batch", 1)

    by_model = {entry["model"]: {key(row): row for row in entry.get("rows", [])} for entry in encode}
    keys = sorted({k for rows in by_model.values() for k in rows}, key=lambda k: (k[1], k[0]))
    lines = [
        f"{'model':<14}{'length':>8}{'batch':>6}{'s/call':>10}{'tok/s':>10}{'GFLOP/s':>9}{'peak MB':>10}"
        + "".join(f"{'x ' + name:>14}" for name in reference_names)
    ]
    for entry in encode:
        name = entry["model"]
        if "error" in entry:
            lines.append(f"{name:<14}  error: {entry['error'][:200]}")
            continue
        for length, batch in keys:
            row = by_model[name].get((length, batch))
            if row is None:
                continue
            if "skipped" in row:
                lines.append(f"{name:<14}{length:>8}{batch:>6}  skipped: {row['skipped']}")
                continue
            ratios = []
            for reference in reference_names:
                other = by_model.get(reference, {}).get((length, batch), {})
                ratios.append(
                    f"{row['tokens_per_s'] / other['tokens_per_s']:>14.2f}" if "tokens_per_s" in other else f"{'-':>14}"
                )
            flops = flops_per_token(name, length)
            rate = f"{flops * row['tokens_per_s'] / 1e9:>9.1f}" if flops else f"{'-':>9}"
            lines.append(
                f"{name:<14}{length:>8}{batch:>6}{row['seconds']:>10.3f}{row['tokens_per_s']:>10.1f}{rate}"
                f"{memory_mb(row):>10.0f}" + "".join(ratios)
            )
    return "\n".join(lines + [""] + flop_bound_lines(sorted({length for length, _ in keys})))


def first_call_line(entry):
    if "error" in entry:
        return f"first call: error: {entry['error'][:200]}"
    split = (
        f" (anonymous {entry['peak_anon_over_loaded_mb']:.0f}, file-backed {entry['peak_file_over_loaded_mb']:.0f})"
        if "peak_anon_over_loaded_mb" in entry
        else ""
    )
    return (
        f"first call in a fresh process, {entry['tokens']} tokens: {entry['seconds']:.2f} s, peak RSS over the built "
        f"model +{entry['peak_rss_over_loaded_mb']:.0f} MB{split}"
    )


def write_plot(encode, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for entry in encode:
        rows = [row for row in entry.get("rows", []) if "seconds" in row and row.get("batch", 1) == 1]
        if rows:
            lengths = [row["length"] for row in rows]
            left.plot(lengths, [row["seconds"] for row in rows], marker="o", label=entry["model"])
            right.plot(lengths, [memory_mb(row) for row in rows], marker="o", label=entry["model"])
    memory = "peak GPU memory" if any(entry.get("device") == "cuda" for entry in encode) else "peak RSS"
    for axis, label in ((left, "encode time per document (s)"), (right, f"{memory} over loaded model (MB)")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("document length (tokens)")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    left.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_bench(args):
    import torch

    device = getattr(args, "device", "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"--device cuda: this torch ({torch.__version__}, CUDA {torch.version.cuda}) sees no GPU; "
            "run on a machine with one, or use --device cpu."
        )
    busy = getattr(args, "busy", 0)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    machine = dict(machine_description(device), bench_threads=args.threads or "torch default", busy_processes=busy)
    results = dict(
        machine=machine,
        command=" ".join(["mamba-retrieval", "bench", *args.argv]),
        encode=[],
        train=[],
        long_document=None,
        first_call=None,
    )
    for name in args.models:
        print(f"encode: {name} ...", file=sys.stderr, flush=True)
        entry = run_child(
            dict(
                kind="encode",
                name=name,
                lengths=args.lengths,
                batch_sizes=getattr(args, "batch_sizes", [1]),
                repeats=args.repeats,
                max_seconds=args.max_seconds,
                stream_chunk_size=args.stream_chunk_size,
                device=device,
                busy=busy,
            ),
            args.threads,
        )
        results["encode"].append(entry if "error" not in entry else dict(model=name, **entry))
    for name in args.train_models:
        print(f"train: {name} ...", file=sys.stderr, flush=True)
        entry = run_child(dict(kind="train", name=name, steps=args.train_steps, device=device, busy=busy), args.threads)
        results["train"].append(entry if "error" not in entry else dict(model=name, **entry))
    if args.long_tokens and device == "cpu":  # (the row is built and timed on CPU: it would mislabel a GPU run)
        print(f"long document: {args.long_tokens} tokens ...", file=sys.stderr, flush=True)
        results["long_document"] = run_child(
            dict(kind="long", tokens=args.long_tokens, stream_chunk_size=args.stream_chunk_size), args.threads
        )
    first_call_tokens = getattr(args, "first_call_tokens", 0)
    if first_call_tokens and device == "cpu":
        print(f"first call in a fresh process: {first_call_tokens} tokens ...", file=sys.stderr, flush=True)
        results["first_call"] = run_child(
            dict(kind="first_call", tokens=first_call_tokens, stream_chunk_size=args.stream_chunk_size), args.threads
        )

    print(format_table(results["encode"]))
    if results["train"]:
        stock = {entry["model"]: entry for entry in results["train"]}
        print(f"\n{'training (fwd+bwd)':<20}{'params':>10}{'tok/s':>10}{'x stock':>10}")
        for entry in results["train"]:
            if "error" in entry:
                print(f"{entry['model']:<20}  error: {entry['error'][:200]}")
                continue
            other = stock.get(entry["model"] + "-stock", {})
            ratio = (
                f"{entry['tokens_per_s'] / other['tokens_per_s']:>10.1f}" if "tokens_per_s" in other else (f"{'-':>10}")
            )
            print(f"{entry['model']:<20}{entry['parameters'] / 1e6:>9.1f}M{entry['tokens_per_s']:>10.1f}{ratio}")
    if results["long_document"]:
        entry = results["long_document"]
        print(f"\nlong document: {json.dumps(entry)}")
    if results["first_call"]:
        print("\n" + first_call_line(results["first_call"]))
    write_text_atomic(output_dir / "bench.json", json.dumps(results, indent=2) + "\n")
    if not args.no_plot:
        write_plot(results["encode"], output_dir / "bench.png")
    print(f"\nwrote {output_dir / 'bench.json'}" + ("" if args.no_plot else f" and {output_dir / 'bench.png'}"))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: mamba-retrieval bench ... (this module's --worker mode is for the bench itself)")
