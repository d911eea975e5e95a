"""`mamba-retrieval bundle MODEL --results DIR --out OUT --name org/name --revision SHA`: an MTEB submission."""

from mamba_retrieval.modeling.pretrained import locate_model


def register(subparsers):
    parser = subparsers.add_parser(
        "bundle",
        help="write an MTEB leaderboard submission (ModelMeta snippet + results folder)",
        description="From a Hub folder and its `mamba-retrieval eval` results, write OUT/mteb_model_meta.py (the "
        "ModelMeta for the mteb repository) and OUT/results/<org>__<name>/<revision>/ (the layout of "
        "the mteb results repository).",
    )
    parser.add_argument("model", help="the Hub folder that was evaluated")
    parser.add_argument("--results", required=True, help="the --output folder of `mamba-retrieval eval`")
    parser.add_argument("--out", required=True, help="bundle folder to write")
    parser.add_argument("--name", required=True, help="Hub id of the model, org/name")
    parser.add_argument("--revision", required=True, help="Hub commit of the model the results belong to")
    parser.add_argument("--eval-name", help="--model-name given to eval, if any")
    parser.add_argument("--eval-revision", help="--revision given to eval, if any")
    parser.add_argument("--release-date", help="YYYY-MM-DD (default today)")
    parser.add_argument("--license", default="apache-2.0", help="license id for the ModelMeta")
    parser.add_argument("--training-datasets", nargs="*", help="mteb names of the training sets (e.g. MSMARCO)")
    parser.add_argument("--adapted-from", help="Hub id of the base model (e.g. state-spaces/mamba-130m-hf)")
    parser.add_argument("--public-training-code", help="URL of the training code")
    parser.add_argument("--force", action="store_true", help="write into a non-empty OUT")
    parser.set_defaults(func=run)


def run(args):
    from mamba_retrieval.eval.leaderboard_bundle import write_bundle

    snippet, target, left_out = write_bundle(
        locate_model(args.model, "MODEL"),
        args.results,
        args.out,
        name=args.name,
        revision=args.revision,
        eval_name=args.eval_name,
        eval_revision=args.eval_revision,
        force=args.force,
        release_date=args.release_date,
        license=args.license,
        training_datasets=args.training_datasets,
        adapted_from=args.adapted_from,
        public_training_code=args.public_training_code,
    )
    print(f"wrote {snippet}\nwrote {target}")
    if left_out:
        print(f"left out (local tasks, not on the leaderboard): {', '.join(left_out)}")
