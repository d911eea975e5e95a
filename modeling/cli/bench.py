"""`mamba-retrieval bench`: encode speed and memory against length; training throughput (eval/bench.py)."""

import argparse
import sys

from mamba_retrieval.eval import bench
from mamba_retrieval.eval.bench import ENCODE_MODELS, TRAIN_MODELS, run_bench
from mamba_retrieval.modeling.cli.arguments import non_negative_int, positive_int


def register(subparsers):
    parser = subparsers.add_parser(
        "bench",
        help="encode speed and memory against length; training throughput",
        description=bench.__doc__.split("\n\n")[0] + " Random weights; each model in its own process.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(ENCODE_MODELS),
        choices=ENCODE_MODELS,
        help="encoders timed: ours (mamba, mamba2), transformers' stock Mamba (-stock), BERT-base",
    )
    parser.add_argument(
        "--lengths", nargs="+", type=positive_int, default=[512, 2048, 8192, 32768], help="tokens per encoded text"
    )
    parser.add_argument(
        "--batch-sizes", nargs="+", type=positive_int, default=[1], help="documents per encode call (each length)"
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="where the models run (cuda: timed between syncs)"
    )
    parser.add_argument("--repeats", type=positive_int, default=1, help="encodes per length; the fastest counts")
    parser.add_argument(
        "--max-seconds", type=float, default=120.0, help="skip a length whose predicted encode time exceeds this"
    )
    parser.add_argument(
        "--stream-chunk-size",
        type=int,
        default=None,
        help="MambaForRetrieval.stream_chunk_size (0: one pass); default: the model's",
    )
    parser.add_argument(
        "--train-models",
        nargs="*",
        default=list(TRAIN_MODELS),
        choices=TRAIN_MODELS,
        help="models whose training steps are timed (none: skip)",
    )
    parser.add_argument("--train-steps", type=positive_int, default=2, help="training steps timed per model")
    parser.add_argument(
        "--long-tokens", type=non_negative_int, default=0, help="CPU: also encode one document this long"
    )
    parser.add_argument(
        "--first-call-tokens",
        type=non_negative_int,
        default=8192,
        help="CPU: peak RSS of a fresh process's first encode of this many tokens (0: skip)",
    )
    parser.add_argument(
        "--busy",
        type=non_negative_int,
        default=0,
        help="busy-loop processes run during every timed run (a loaded machine; compare ratios)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch and numba threads in each child (default: torch's default, all cores)",
    )
    parser.add_argument("--output-dir", default="bench-results", help="where the JSON results and the plot go")
    parser.add_argument("--no-plot", action="store_true", help="write no plot (matplotlib not needed)")
    parser.set_defaults(func=_run_from_cli)


def _run_from_cli(args):
    args.lengths = sorted(set(args.lengths))
    args.batch_sizes = sorted(set(args.batch_sizes))
    args.argv = sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "bench" else []
    run_bench(args)
