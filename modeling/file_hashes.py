"""Content hashes of files and folders: the one definition of "the same weights" and "the same data".

`weights_hash(folder)` names a model's weights everywhere: the revision of a local model's eval results, the model
a search index was built with, the hash a card or training record quotes. It covers the weight and config files of
the folder and of its sub-folders (a query/ + document/ folder included), with their relative paths, so that any
changed encoder changes it.
"""

import hashlib
from pathlib import Path

from tqdm.auto import tqdm

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "config.json")
BLOCK = 1 << 22
LARGE = 1 << 28  # bytes from which hashing (or reading, conversion.checkpoint_files) shows a progress bar


def update_digest(digest, path):
    """Feed a file's bytes to `digest` block by block (a progress bar for large files)."""
    size = Path(path).stat().st_size
    with (
        open(path, "rb") as handle,
        tqdm(total=size, unit="B", unit_scale=True, desc=f"hashing {Path(path).name}", disable=size < LARGE) as bar,
    ):
        while block := handle.read(BLOCK):
            digest.update(block)
            bar.update(len(block))
    return digest


def file_sha256(path):
    """Hex SHA-256 of one file (a progress bar for large ones)."""
    return update_digest(hashlib.sha256(), path).hexdigest()


def files_hash(paths, root=None):
    """`sha256-<16 hex>` over `paths`: each one's name (relative to `root`, else its file name), then its bytes."""
    digest = hashlib.sha256()
    for path in paths:
        name = Path(path).relative_to(root).as_posix() if root is not None else Path(path).name
        digest.update(name.encode())
        update_digest(digest, path)
    return "sha256-" + digest.hexdigest()[:16]


def weights_hash(folder):
    """`sha256-<16 hex>` over the folder's weight and config files, top level and sub-folders."""
    folder = Path(folder)
    files = sorted({path for pattern in WEIGHT_PATTERNS for path in folder.rglob(pattern) if path.is_file()})
    if not any(path.name != "config.json" for path in files):
        raise FileNotFoundError(
            f"{folder} holds no weights (*.safetensors or pytorch_model.bin); is it a model folder?"
        )
    return files_hash(files, root=folder)
