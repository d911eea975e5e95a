"""Peak memory and speed of a windowed SPScanner scan over documents longer than one window (CPU).

The document is real text: QMSum meeting transcripts (../shared/data/qmsum-longdoc) joined until it has the wanted
number of tokens, segmented into SPScanner's sentence units. Each case runs in its own process, so that its peak
resident memory (ru_maxrss) is its own; the table gives the peak after loading (model + tokenized document) and
the peak of the whole scan. The baseline of the same run is one pass over the whole document (a window as long as
the document): windowed scans keep memory bounded by the window, one pass grows with the document.

The model is a randomly initialised scanner of a named size (default `mamba2-tiny`: 2 layers, width 64), on the
readable reference path; memory scales with the model's width and layers, the shape of the comparison does not.

    python eval/studies/scanner_memory_benchmark.py --output eval/results/scanner_memory.json
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from mamba_retrieval.modeling.data_files import data_dir, numbered_jsonl

DEFAULT_DATA = data_dir()


def long_document(data_dir, tokens):
    """QMSum transcripts joined until the text has roughly `tokens` GPT-NeoX tokens (4 characters a token)."""
    corpus = Path(data_dir) / "qmsum-longdoc" / "corpus.jsonl"
    if not corpus.is_file():
        raise FileNotFoundError(f"{corpus} not found; pass --data-dir (the shared/data folder).")
    texts, length = [], 0
    for _, row in numbered_jsonl(corpus):
        texts.append(row["text"])
        length += len(row["text"])
        if length > 5 * tokens:
            break
    if length <= 5 * tokens:
        raise ValueError(f"The QMSum corpus has too little text for {tokens} tokens.")
    return "\n".join(texts)


def max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def run_case(size, tokens, window, data_dir):
    """One case, in this process: segment, cut to `tokens` document tokens, scan; returns measurements."""
    import torch

    from mamba_retrieval.modeling.scanner.sentence_scanner import SentenceScanner, random_scanner, sentence_windows

    torch.set_num_threads(2)
    scanner = SentenceScanner(random_scanner(size, seed=0, window_size=window))
    started = time.perf_counter()
    document = scanner.segment(long_document(data_dir, tokens))
    segment_seconds = time.perf_counter() - started
    ends = [end for end in document.end_positions if end < tokens]
    input_ids = document.input_ids[: ends[-1] + 1]
    after_load = max_rss_mb()
    started = time.perf_counter()
    scores = scanner.score("What did the group decide about the remote control design?", input_ids, ends)
    scan_seconds = time.perf_counter() - started
    return {
        "model": size,
        "document_tokens": len(input_ids),
        "sentence_units": len(ends),
        "window": window,
        "windows": len(sentence_windows(ends, window, scanner.model.config.stride)),
        "segment_seconds": segment_seconds,
        "scan_seconds": scan_seconds,
        "tokens_per_second": len(input_ids) / scan_seconds,
        "peak_rss_after_load_mb": after_load,
        "peak_rss_mb": max_rss_mb(),
        "finite_scores": all(s == s for s in scores),
    }


def run_in_child(size, tokens, window, data_dir):
    command = [
        sys.executable,
        __file__,
        "--child",
        "--size",
        size,
        "--tokens",
        str(tokens),
        "--window",
        str(window),
        "--data-dir",
        str(data_dir),
    ]
    process = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if process.returncode != 0:
        raise RuntimeError(f"case {tokens} tokens / window {window} failed:\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="mamba2-tiny", help="random scanner size (mamba2-tiny, mamba2-130m, ...)")
    parser.add_argument("--tokens", type=int, default=200_000, help="document tokens of the main case")
    parser.add_argument("--window", type=int, default=120_000, help="window of document tokens")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--output", help="write the results as JSON here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(args.size, args.tokens, args.window, args.data_dir)))
        return
    cases = [
        (args.window // 2, args.window),
        (args.window, args.window),
        (args.tokens, args.window),
        (args.tokens, args.tokens + 1),
    ]  # the last: one pass over the whole document (baseline)
    results = []
    for tokens, window in cases:
        result = run_in_child(args.size, tokens, window, args.data_dir)
        results.append(result)
        print(
            f"{result['document_tokens']:>8} tokens, window {window:>7}: {result['windows']} windows, "
            f"scan {result['scan_seconds']:.1f} s ({result['tokens_per_second']:.0f} tokens/s), "
            f"peak RSS {result['peak_rss_mb']:.0f} MB (after load {result['peak_rss_after_load_mb']:.0f} MB)",
            flush=True,
        )
    windowed, one_pass, one_window = results[2], results[3], results[1]
    summary = {
        "peak_ratio_windowed_long_vs_one_window": windowed["peak_rss_mb"] / one_window["peak_rss_mb"],
        "peak_ratio_windowed_vs_one_pass": windowed["peak_rss_mb"] / one_pass["peak_rss_mb"],
    }
    print(
        "\n| document tokens | window | windows | scan s | tokens/s | peak RSS MB |"
        "\n| --- | --- | --- | --- | --- | --- |"
    )
    for r in results:
        window = "whole document (one pass)" if r is one_pass else f"{r['window']:,}"
        print(
            f"| {r['document_tokens']:,} | {window} | {r['windows']} | {r['scan_seconds']:.1f} | "
            f"{r['tokens_per_second']:.0f} | {r['peak_rss_mb']:.0f} |"
        )
    print(
        f"\npeak RSS, {windowed['document_tokens']:,} tokens windowed / one window of {args.window:,}: "
        f"{summary['peak_ratio_windowed_long_vs_one_window']:.2f}; windowed / one pass: "
        f"{summary['peak_ratio_windowed_vs_one_pass']:.2f}"
    )
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(
            json.dumps({"model": args.size, "machine": "2-core shared CPU", "cases": results, **summary}, indent=2)
            + "\n"
        )


if __name__ == "__main__":
    main()
