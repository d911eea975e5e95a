"""`mamba-retrieval ship`: maintain the model shipped inside the package (a maintainer's command)."""

from mamba_retrieval.modeling.cli.arguments import positive_int
from mamba_retrieval.modeling.pretrained import DEFAULT_MODEL, PRETRAINED_DIR


def register(subparsers):
    parser = subparsers.add_parser(
        "ship",
        help="store a trained folder as the shipped model, record its scores, refresh its remote code",
        description="Maintain a model shipped with the package (default: the folder of "
        f"{DEFAULT_MODEL} inside the installed package, the checkout's modeling/pretrained/ in an editable install).",
    )
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")
    copy = steps.add_parser(
        "copy",
        help="store a trained Hub folder as a shipped model (float16 weights)",
        description="Copy TRAINED_FOLDER into OUT_DIR with float16 weights, staged and checked before it "
        "replaces OUT_DIR.",
    )
    copy.add_argument("trained_folder", help="the trained Hub folder")
    copy.add_argument("out_dir", nargs="?", default=str(PRETRAINED_DIR / DEFAULT_MODEL), help="the shipped folder")
    copy.add_argument(
        "--max-seq-length", type=positive_int, help="tokens per text in the copy (default: the trained folder's)"
    )
    copy.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    metrics = steps.add_parser(
        "metrics",
        help="record a folder's evaluation scores in its training.json",
        description="Record the scores of FOLDER in the result files of `mamba-retrieval eval` in "
        "FOLDER/training.json.",
    )
    metrics.add_argument("folder", nargs="?", default=str(PRETRAINED_DIR / DEFAULT_MODEL), help="the shipped folder")
    metrics.add_argument("--results", required=True, help="the --output folder of `mamba-retrieval eval`")
    code = steps.add_parser(
        "refresh-code",
        help="copy the current remote-code pair into a shipped folder",
        description="Copy the package's modeling and configuration modules into FOLDER, where the Hub's remote code "
        "loads them from.",
    )
    code.add_argument("folder", nargs="?", default=str(PRETRAINED_DIR / DEFAULT_MODEL), help="the shipped folder")
    parser.set_defaults(func=run)


def run(args):
    from mamba_retrieval.modeling.shipping import refresh_remote_code, write_shipped_copy

    if args.step == "copy":
        difference = write_shipped_copy(args.trained_folder, args.out_dir, args.force, args.max_seq_length)
        print(f"wrote {args.out_dir}; embedding max |difference| from float32: {difference:.2e}")
    elif args.step == "metrics":
        # the eval extra (mteb) reads the result files: imported for this step only, so copy and refresh-code
        # run on the minimal install
        from mamba_retrieval.eval.training_metrics import record_metrics

        print(record_metrics(args.folder, args.results))
    else:
        changed = refresh_remote_code(args.folder)
        print("\n".join(f"updated {path}" for path in changed) or f"{args.folder}: remote code already current")
