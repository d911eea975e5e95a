"""`mamba-retrieval bundle MODEL --results DIR --out OUT --name org/name --revision SHA`: an MTEB submission.

Writes what the mteb repositories take from a new model:
- `OUT/mteb_model_meta.py`: the model's `ModelMeta` as Python (mteb's own `ModelMeta.to_python()`), for
  `mteb/models/model_implementations/` in the mteb repository;
- `OUT/results/<org>__<name>/<revision>/*.json` + `model_meta.json`: the layout of the results repository
  (embeddings-benchmark/results), holding the TaskResult files of every mteb task the model was evaluated on.
Local tasks (`--beir-dir` folders) have no Hub dataset, so they are listed and left out.
"""

import datetime
import json
import shutil
from pathlib import Path

import mteb
from mteb.models import ModelMeta, SentenceTransformerEncoderWrapper
from safetensors import safe_open

from mamba_retrieval.eval.model_specs import resolve_model
from mamba_retrieval.eval.result_files import read_task_result, task_result_files
from mamba_retrieval.eval.task_selection import get_named_task
from mamba_retrieval.modeling.data_files import read_json_or_empty
from mamba_retrieval.modeling.safe_paths import model_name_components, path_component

FRAMEWORK = ["Sentence Transformers", "PyTorch", "Transformers", "safetensors"]


def hub_folder_configs(folder):
    """(config.json, config_sentence_transformers.json) of a sentence-transformers Hub folder; both must exist."""
    config = read_json_or_empty(Path(folder) / "config.json")
    st_config = read_json_or_empty(Path(folder) / "config_sentence_transformers.json")
    if not config or not st_config:
        raise FileNotFoundError(
            f"{folder} is not a sentence-transformers Hub folder (config.json and "
            "config_sentence_transformers.json are needed)."
        )
    return config, st_config


def count_parameters(folder):
    """(parameter count, bytes) of the folder's safetensors weights, read from their headers."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder} has no *.safetensors weights; the bundle counts parameters from them.")
    count = 0
    for path in files:
        with safe_open(path, "pt") as weights:
            for key in weights.keys():
                shape = weights.get_slice(key).get_shape()
                numel = 1
                for size in shape:
                    numel *= size
                count += numel
    return count, sum(path.stat().st_size for path in files)


def build_model_meta(
    folder,
    *,
    name,
    revision,
    release_date=None,
    license="apache-2.0",
    training_datasets=None,
    adapted_from=None,
    public_training_code=None,
    languages=("eng-Latn",),
):
    """The leaderboard ModelMeta of a Hub folder, validated by mteb (pydantic) as it is built."""
    folder = Path(folder)
    config, st_config = hub_folder_configs(folder)
    for dataset in training_datasets or ():
        get_named_task(dataset)  # a training set must be an mteb task name: the leaderboard marks overlap by it
    n_parameters, weight_bytes = count_parameters(folder)
    hidden = (
        config.get("hidden_size")
        or read_json_or_empty(folder / "1_Pooling" / "config.json")["word_embedding_dimension"]
    )
    vocab = config.get("vocab_size")
    return ModelMeta(
        loader=SentenceTransformerEncoderWrapper,
        loader_kwargs={"trust_remote_code": True},
        name=name,
        revision=revision,
        release_date=release_date or datetime.date.today().isoformat(),
        languages=list(languages),
        n_parameters=n_parameters,
        n_embedding_parameters=vocab * hidden if vocab else None,
        memory_usage_mb=round(weight_bytes / 2**20),
        max_tokens=read_json_or_empty(folder / "sentence_bert_config.json").get("max_seq_length"),
        embed_dim=hidden,
        license=license,
        open_weights=True,
        public_training_code=public_training_code,
        public_training_data=None,
        framework=list(FRAMEWORK),
        reference=f"https://huggingface.co/{name}",
        similarity_fn_name=st_config.get("similarity_fn_name") or "cosine",
        use_instructions=any((st_config.get("prompts") or {}).values()),
        training_datasets=set(training_datasets) if training_datasets is not None else None,
        adapted_from=adapted_from,
    )


def model_meta_snippet(meta):
    """Python source for the mteb repository; `exec` of it yields a ModelMeta equal to `meta`."""
    variable = meta.name.split("/")[-1].replace("-", "_").replace(".", "_").lower()
    return (
        "from mteb.models.model_meta import ModelMeta, ScoringFunction\n"
        "from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper\n\n"
        f"{variable} = {meta.to_python()}\n"
    )


def find_model_results(results_dir, meta):
    """The folder of `meta`'s TaskResult files in RESULTS_DIR (an eval --output folder or its results/), with a
    clear error when it holds results of other models only."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"Results folder {results_dir} does not exist; run `mamba-retrieval eval` first.")
    root = (
        results_dir
        if results_dir.name == "results" or not (results_dir / "results").is_dir()
        else results_dir / "results"
    )
    cache = mteb.ResultCache(root.parent)
    folder = cache.get_task_result_path(task_name="_", model_name=meta).parent
    if folder.is_dir() and task_result_files(folder):
        stored = read_json_or_empty(folder / "model_meta.json")
        if stored and (stored.get("name"), stored.get("revision")) != (meta.name, meta.revision):
            raise ValueError(
                f"{folder}/model_meta.json is for {stored.get('name')} @ {stored.get('revision')}, "
                f"not {meta.name} @ {meta.revision}."
            )
        return folder
    found = sorted(
        f"{path.parent.parent.name.replace('__', '/')} @ {path.parent.name}"
        for path in root.glob("*/*/model_meta.json")
    )
    raise ValueError(
        f"{results_dir} has no results for {meta.name} @ {meta.revision} (expected in {folder}). "
        + (
            f"It holds results for: {'; '.join(found)}. Pass the model those results are for, or "
            "--eval-name/--eval-revision as given to eval."
            if found
            else "It holds no results."
        )
    )


def write_bundle(
    model, results_dir, out_dir, *, name, revision, eval_name=None, eval_revision=None, force=False, **meta_fields
):
    """Write the submission; returns (snippet path, results folder, names of left-out local tasks)."""
    out_dir = Path(out_dir)
    model_name_components(name, "--name")
    path_component(revision, "--revision")  # a folder under OUT that --force replaces: it must stay there
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise FileExistsError(f"{out_dir} exists and is not empty; choose another --out or pass --force.")
    source = find_model_results(results_dir, resolve_model(model, name=eval_name, revision=eval_revision))
    meta = build_model_meta(model, name=name, revision=revision, **meta_fields)
    target = out_dir / "results" / meta.model_name_as_path() / revision
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    left_out = []
    for path in task_result_files(source):
        result = read_task_result(path)
        try:
            get_named_task(result.task_name)
        except ValueError:  # a local task (--beir-dir): not on the leaderboard
            left_out.append(result.task_name)
            continue
        shutil.copyfile(path, target / path.name)
    (target / "model_meta.json").write_text(json.dumps(meta.to_dict(), default=str, indent=4) + "\n")
    snippet = out_dir / "mteb_model_meta.py"
    snippet.write_text(model_meta_snippet(meta))
    return snippet, target, left_out
