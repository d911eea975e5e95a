"""Models that ship inside the package, loadable by name offline.

`mamba-retrieval-tiny` is a complete Hub folder (remote code, fp16 weights, tokenizer, sentence-transformers
files, card, training.json) installed with the package. Every command that takes a model resolves names through
`locate_model`, and Python users get its path from `model_path`:

    SentenceTransformer(model_path("mamba-retrieval-tiny"), trust_remote_code=True)

`bm25` (bm25s with Anserini's BEIR settings) is the other model known by name: `eval`, `index` and `search` take it.
"""

import difflib
import os
from pathlib import Path

import huggingface_hub
from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError
from huggingface_hub.utils import validate_repo_id

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
DEFAULT_MODEL = "mamba-retrieval-tiny"
SHIPPED_MODELS = ("mamba-retrieval-tiny",)
BM25_NAMES = ("bm25", "bm25s")
BM25_PARAMETERS = {"k1": 0.9, "b": 0.4}  # Anserini's BEIR settings; the data README's SciFact reference uses them


def model_path(name=DEFAULT_MODEL):
    """The folder of a shipped model, as a string (what `from_pretrained` and `SentenceTransformer` take)."""
    if name not in SHIPPED_MODELS:
        raise ValueError(f"{name!r} is not a model shipped with mamba-retrieval; shipped: {', '.join(SHIPPED_MODELS)}.")
    folder = PRETRAINED_DIR / name
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"The shipped model folder {folder} is missing or incomplete; reinstall mamba-retrieval."
        )
    return str(folder)


def resolve_shipped(name_or_path):
    """A shipped model's name -> its folder; anything else (a folder, a Hub id) unchanged. An existing local folder
    of the same name wins, as it does for `from_pretrained`."""
    if name_or_path in SHIPPED_MODELS and not Path(name_or_path).exists():
        return model_path(name_or_path)
    return name_or_path


def locate_model(name, option="--model", also=()):
    """`name` as a loader takes it: a shipped model's folder, a local folder, a Hub id that is cached or that the Hub
    confirms, or one of the names in `also` (bm25, named sizes), unchanged. Anything else is a one-line ValueError
    that says what was tried, instead of a loader's traceback after minutes of Hub retries."""
    name = str(name)
    if name in also:
        return name
    path = Path(resolve_shipped(name))
    if path.is_dir():
        return str(path)
    if path.exists():
        raise ValueError(f"{option} {name}: that is a file; pass a model folder.")
    known = [*SHIPPED_MODELS, *also]
    close = difflib.get_close_matches(name, known, n=1)
    tried = f"{option} {name!r} is no folder here, no shipped model ({', '.join(known)})"
    hint = f"Did you mean {close[0]!r}?" if close else "Pass a model folder, a shipped model's name or a Hub id."
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ValueError(f"{tried} and no Hub id. {hint}") from None
    if isinstance(huggingface_hub.try_to_load_from_cache(name, "config.json"), str):
        return name  # in the Hub cache: loaders read it from there, online or not
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ValueError(f"{tried}, and as a Hub id it is not in the cache (HF_HUB_OFFLINE is set). {hint}")
    try:
        huggingface_hub.model_info(name, timeout=10)  # one request; the loaders would retry for half a minute
    except RepositoryNotFoundError:
        raise ValueError(
            f"{tried}, and the Hugging Face Hub has no model {name!r} (or it is private: `hf auth login`). {hint}"
        ) from None
    except Exception as error:  # noqa: BLE001 - any network failure means the same to the user
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{tried}, and the Hugging Face Hub could not be reached ({reason}). {hint}") from None
    return name
