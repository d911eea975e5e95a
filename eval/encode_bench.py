"""Benchmark of `mamba-retrieval encode`: its throughput against a plain `SentenceTransformer.encode` of the same
texts in one process, in one run; then SIGKILL at random moments and a rerun, checked against an uninterrupted run.

    python -m mamba_retrieval.eval.encode_bench [--corpus ../shared/data/beir-scifact] [--model mamba-retrieval-tiny]
        [--repeats 2] [--shard-sizes 10000 1000] [--kills 3] [--output encode_bench.json]

Throughput: the baseline reads the corpus whole (data_files.read_corpus), loads the model and encodes every text in
one call (prompt "document", the same batch size); `encode` streams the corpus, encodes it one shard at a time and
writes the shards and manifest. Each is timed from start to the embeddings on disk (baseline: in memory), model
loading included. The modes alternate `--repeats` times (baseline, encode per shard size, baseline, ...) because the
machine is shared; the table gives the median time of each and the ratio of throughputs. Every encode output is
checked against the baseline's embeddings (max abs diff).

Kill: `mamba-retrieval encode` runs as a subprocess with --shard-size `--kill-shard-size`; it is killed with SIGKILL
at a random moment after each new shard, `--kills` times, then rerun to the end; its ids and embeddings must equal an
uninterrupted run's exactly.
"""

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mamba_retrieval.modeling.data_files import data_dir, document_text, read_corpus, write_jsonl, write_text_atomic
from mamba_retrieval.modeling.encoding.encoder import EncodeSettings, encode_corpus
from mamba_retrieval.modeling.encoding.shards import iter_shards, read_manifest
from mamba_retrieval.modeling.pretrained import DEFAULT_MODEL, locate_model


def read_folder(out):
    parts = list(iter_shards(out))
    return [i for ids, _ in parts for i in ids], np.concatenate([embeddings for _, embeddings in parts])


def baseline(corpus, model, batch_size):
    """Plain sentence-transformers: the corpus read whole, one encode call. (seconds, ids, embeddings)"""
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    documents = read_corpus(corpus)
    encoder = SentenceTransformer(model, trust_remote_code=True, device="cpu")
    texts = [document_text(title, text) for _, title, text in documents]
    embeddings = encoder.encode(texts, prompt_name="document", batch_size=batch_size, convert_to_numpy=True)
    return time.perf_counter() - started, [doc_id for doc_id, _, _ in documents], embeddings


def timed_encode(corpus, model, settings, work):
    out = Path(tempfile.mkdtemp(dir=work))
    started = time.perf_counter()
    encode_corpus(corpus, out / "embeddings", model, settings, devices=["cpu"], progress=False)
    return time.perf_counter() - started, out / "embeddings"


def rows_written(out):
    try:
        return read_manifest(out)["rows"]
    except (OSError, ValueError):
        return -1


def kill_and_rerun(corpus, model, args, work, rng):
    """SIGKILL `encode` at random moments, rerun it to the end; compare with an uninterrupted run."""
    if args.kill_limit:  # the corpus's first documents, as a JSONL file
        rows = [{"_id": doc_id, "title": title, "text": text} for doc_id, title, text in read_corpus(corpus)]
        corpus = Path(work, "kill-corpus.jsonl")
        write_jsonl(corpus, rows[: args.kill_limit])
    command = [sys.executable, "-m", "mamba_retrieval.modeling.cli", "encode", str(corpus)]
    options = ["--model", model, "--batch-size", str(args.batch_size), "--shard-size", str(args.kill_shard_size)]
    killed, whole = Path(work, "killed"), Path(work, "whole")
    subprocess.run([*command, str(whole), *options], check=True, stderr=subprocess.DEVNULL)
    moments = []
    for _ in range(args.kills):
        before = max(rows_written(killed), 0)
        process = subprocess.Popen([*command, str(killed), *options], stderr=subprocess.DEVNULL)
        while rows_written(killed) <= before and process.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0, args.kill_max_delay))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            moments.append(rows_written(killed))
    subprocess.run([*command, str(killed), *options], check=True, stderr=subprocess.DEVNULL)
    (whole_ids, whole_embeddings), (ids, embeddings) = read_folder(whole), read_folder(killed)
    return {
        "killed_at_rows": moments,
        "same_ids": ids == whole_ids,
        "identical_embeddings": bool(np.array_equal(embeddings, whole_embeddings)),
        "rows": len(ids),
        "corpus": str(corpus),
        "unique_ids": len(set(ids)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=str(data_dir("beir-scifact")), help="JSONL corpus or BEIR folder")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model folder, Hub id or shipped model name")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass, both modes")
    parser.add_argument("--shard-sizes", type=int, nargs="+", default=[10_000, 1_000], help="encode's --shard-size")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds; the median counts (0: none)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs before the final rerun (0: no kill check)")
    parser.add_argument("--kill-shard-size", type=int, default=256, help="--shard-size of the killed runs")
    parser.add_argument("--kill-limit", type=int, default=0, help="kill check on the first N documents (0: all)")
    parser.add_argument("--kill-max-delay", type=float, default=3.0, help="seconds after a new shard, at most")
    parser.add_argument("--seed", type=int, default=0, help="random kill moments")
    parser.add_argument("--output", help="write the figures and settings here (JSON)")
    args = parser.parse_args(argv)
    model = locate_model(args.model)
    timings = {"baseline": []} | {f"encode shard {size}": [] for size in args.shard_sizes}
    worst = {}
    with tempfile.TemporaryDirectory() as work:
        from sentence_transformers import SentenceTransformer

        # the fused CPU scan's first call in a process loads (or compiles) its numba kernels: not timed
        SentenceTransformer(model, trust_remote_code=True, device="cpu").encode(["warm up", "the scan"])
        for round_number in range(args.repeats):
            seconds, ids, reference = baseline(args.corpus, model, args.batch_size)
            timings["baseline"].append(seconds)
            for size in args.shard_sizes:
                settings = EncodeSettings(batch_size=args.batch_size, shard_size=size)
                seconds, out = timed_encode(args.corpus, model, settings, work)
                timings[f"encode shard {size}"].append(seconds)
                got_ids, embeddings = read_folder(out)
                assert got_ids == ids, "encode's ids differ from the corpus order"
                worst[size] = max(worst.get(size, 0.0), float(np.abs(embeddings - reference).max()))
            print(f"round {round_number + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in timings.items()))
        kill = kill_and_rerun(args.corpus, model, args, work, random.Random(args.seed)) if args.kills else None
    if timings["baseline"]:
        base = statistics.median(timings["baseline"])
        print(
            f"\n{len(ids)} documents of {args.corpus}, model {args.model}, batch size {args.batch_size}, "
            f"{os.cpu_count()} CPUs"
        )
        print(f"{'mode':<22}{'median s':>10}{'docs/s':>10}{'throughput vs baseline':>26}{'max abs diff':>14}")
        for name, values in timings.items():
            median = statistics.median(values)
            size = int(name.split()[-1]) if name != "baseline" else None
            diff = f"{worst[size]:.1e}" if size else "-"
            print(f"{name:<22}{median:>10.1f}{len(ids) / median:>10.1f}{base / median:>25.3f}x{diff:>14}")
    if kill:
        print(
            f"kill ({kill['corpus']}): SIGKILL at rows {kill['killed_at_rows']}, rerun: {kill['rows']} rows, "
            f"{kill['unique_ids']} unique ids, same ids {kill['same_ids']}, identical embeddings "
            f"{kill['identical_embeddings']}"
        )
    if args.output:
        record = {"settings": vars(args), "seconds": timings, "max_abs_diff": worst, "kill": kill}
        write_text_atomic(args.output, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
