"""Models that ship inside the package, loadable by name offline.

`mamba-retrieval-tiny` is a complete Hub folder (remote code, fp16 weights, tokenizer, sentence-transformers
files, card, training.json) installed with the package. Every command that takes a model resolves names through
`resolve_shipped`, and Python users get its path from `model_path`:

    SentenceTransformer(model_path("mamba-retrieval-tiny"), trust_remote_code=True)
"""

from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
DEFAULT_MODEL = "mamba-retrieval-tiny"
SHIPPED_MODELS = ("mamba-retrieval-tiny",)


def model_path(name=DEFAULT_MODEL):
    """The folder of a shipped model, as a string (what `from_pretrained` and `SentenceTransformer` take)."""
    if name not in SHIPPED_MODELS:
        raise ValueError(f"{name!r} is not a model shipped with mamba-retrieval; shipped: {', '.join(SHIPPED_MODELS)}.")
    folder = PRETRAINED_DIR / name
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"The shipped model folder {folder} is missing or incomplete; reinstall "
                                "mamba-retrieval.")
    return str(folder)


def resolve_shipped(name_or_path):
    """A shipped model's name -> its folder; anything else (a folder, a Hub id) unchanged. An existing local folder
    of the same name wins, as it does for `from_pretrained`."""
    if name_or_path in SHIPPED_MODELS and not Path(name_or_path).exists():
        return model_path(name_or_path)
    return name_or_path


def write_shipped_copy(trained_folder, out_dir, force=False, max_seq_length=None):
    """Copy a trained Hub folder into `out_dir` with its floating-point weights stored as float16 (half the size,
    for the repository) while config.json keeps float32, so transformers and sentence-transformers load and run
    it in float32. `max_seq_length` replaces the folder's token limit (sentence-transformers' and the tokenizer's).
    Returns the largest absolute difference between the two folders' embeddings of a probe text."""
    import json
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from .hub_folder import staged_folder

    trained_folder = Path(trained_folder)
    with staged_folder(out_dir, force) as staging:
        shutil.copytree(trained_folder, staging, dirs_exist_ok=True)
        weights = load_file(trained_folder / "model.safetensors")
        save_file({name: tensor.half() if tensor.is_floating_point() else tensor for name, tensor in weights.items()},
                  staging / "model.safetensors", metadata={"format": "pt"})
        limits = {"sentence_bert_config.json": "max_seq_length", "tokenizer_config.json": "model_max_length"}
        for name, key in limits.items() if max_seq_length else ():
            settings = json.loads((staging / name).read_text())
            settings[key] = max_seq_length
            (staging / name).write_text(json.dumps(settings, indent=2) + "\n")
    probe = ["Mamba is a selective state-space model; this sentence checks the stored copy."]
    from sentence_transformers import SentenceTransformer

    embeddings = [SentenceTransformer(str(folder), trust_remote_code=True, device="cpu").encode(probe)
                  for folder in (trained_folder, out_dir)]
    return float(abs(torch.tensor(embeddings[0]) - torch.tensor(embeddings[1])).max())


def record_metrics(folder, results_dir, metric="ndcg_at_10"):
    """Write `metric` of every task evaluated for `folder` (its mteb result files in `results_dir`, an eval
    --output folder) into folder/training.json under "metrics", with the files the numbers came from. The result
    files are found by the folder's weights hash, so they belong to these very weights. Returns the metrics."""
    import json

    from mamba_retrieval.eval.leaderboard_bundle import find_model_results
    from mamba_retrieval.eval.model_specs import resolve_model
    from mamba_retrieval.eval.result_files import sourced_scores, task_result_files

    folder = Path(folder)
    record_file = folder / "training.json"
    if not record_file.is_file():
        raise FileNotFoundError(f"{record_file} does not exist; metrics are recorded beside a training record.")
    results = find_model_results(results_dir, resolve_model(str(folder)))
    scores = [score for path in task_result_files(results) for score in sourced_scores(path, [metric])
              if score.split == "test"]  # the zero-shot scores; a dev run in the same file is not a final metric
    record = json.loads(record_file.read_text())
    record["metrics"] = {metric: {score.task: round(score.value, 5) for score in scores},
                         "split": sorted({score.split for score in scores}),
                         "result_files": sorted({_relative(score.file) for score in scores})}
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    return record["metrics"]


def _relative(path):
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mamba_retrieval.modeling.pretrained",
                                     description="Make a shipped model from a trained Hub folder.")
    commands = parser.add_subparsers(dest="command", required=True)
    copy = commands.add_parser("copy", help="store a trained Hub folder as a shipped model (float16 weights)")
    copy.add_argument("trained_folder")
    copy.add_argument("out_dir", nargs="?", default=str(PRETRAINED_DIR / DEFAULT_MODEL))
    copy.add_argument("--max-seq-length", type=int, help="tokens per text in the copy (default: the trained folder's)")
    copy.add_argument("--force", action="store_true")
    metrics = commands.add_parser("metrics", help="record a folder's evaluation scores in its training.json")
    metrics.add_argument("folder", nargs="?", default=str(PRETRAINED_DIR / DEFAULT_MODEL))
    metrics.add_argument("--results", required=True, help="the --output folder of `mamba-retrieval eval`")
    arguments = parser.parse_args(argv)
    if arguments.command == "copy":
        difference = write_shipped_copy(arguments.trained_folder, arguments.out_dir, arguments.force,
                                        arguments.max_seq_length)
        print(f"wrote {arguments.out_dir}; embedding max |difference| from float32: {difference:.2e}")
    else:
        print(record_metrics(arguments.folder, arguments.results))


if __name__ == "__main__":
    main()
