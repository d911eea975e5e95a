"""`mamba-retrieval card MODEL --results DIR`: write the folder's README.md and .eval_results/ from result files."""

from mamba_retrieval.modeling.pretrained import locate_model


def register(subparsers):
    parser = subparsers.add_parser(
        "card",
        help="write a Hub folder's model card from its mteb results",
        description="Render MODEL/README.md (YAML front matter, usage, prompts, install matrix, warnings, speed "
        "guidance, evaluation table with baselines) and MODEL/.eval_results/*.yaml from the result "
        "files of `mamba-retrieval eval`. Every score comes from a result file.",
    )
    parser.add_argument("model", help="the Hub folder")
    parser.add_argument("--results", required=True, help="the --output folder of `mamba-retrieval eval`")
    parser.add_argument("--repo-id", help="Hub id shown in the usage (default: the evaluated model name)")
    parser.add_argument("--revision", help="Hub commit pinned in the usage (default: the evaluated revision)")
    parser.add_argument("--eval-name", help="--model-name given to eval, if any")
    parser.add_argument("--eval-revision", help="--revision given to eval, if any")
    parser.add_argument("--base-model", help="Hub id of the base model, for the front matter")
    parser.add_argument("--license", default="apache-2.0", help="license id for the front matter")
    parser.add_argument("--no-baselines", action="store_true", help="only this model's column")
    parser.add_argument("--force", action="store_true", help="replace a README.md not written by mamba-retrieval")
    parser.set_defaults(func=run)


def run(args):
    from mamba_retrieval.hub_cards.render import write_card

    written = write_card(
        locate_model(args.model, "MODEL"),
        args.results,
        force=args.force,
        repo_id=args.repo_id,
        revision=args.revision,
        eval_name=args.eval_name,
        eval_revision=args.eval_revision,
        base_model=args.base_model,
        license=args.license,
        baselines=not args.no_baselines,
    )
    for path in written:
        print(f"wrote {path}")
