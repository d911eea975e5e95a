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
