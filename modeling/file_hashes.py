"""Content hashes of files and folders: the one definition of "the same weights" and "the same data".

`weights_hash(folder)` names a model's weights everywhere: the revision of a local model's eval results, the model
a search index was built with, the hash a card or training record quotes. It covers the weight and config files of
the folder and of its sub-folders (a query/ + document/ folder included), with their relative paths, so that any
changed encoder changes it.
"""

import hashlib
import json
from pathlib import Path

from tqdm.auto import tqdm

from mamba_retrieval.modeling.data_files import atomic_file, cache_dir

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "config.json")
BLOCK = 1 << 22
LARGE = 1 << 28  # bytes from which hashing (or reading, conversion.checkpoint_files) shows a progress bar
IDENTITIES_FILE = "model-identities.json"  # in the cache folder: weights hashes by the files' sizes and mtimes


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


def model_identity(model):
    """What the index records about its model: a local folder by path and weights hash, anything else by name.
    The hash is kept in the cache, keyed by the weight files' sizes and modification times, so a search does not
    read every weight file again (a changed file changes its stamp and is hashed anew)."""
    folder = Path(model)
    if not folder.is_dir():
        return model
    folder = folder.resolve()
    files = sorted({p for pattern in WEIGHT_PATTERNS for p in folder.rglob(pattern) if p.is_file()})
    stamp = []
    for path in files:
        info = path.stat()
        stamp.append([path.relative_to(folder).as_posix(), info.st_size, info.st_mtime_ns])
    identities_file, identities = cache_dir(IDENTITIES_FILE), {}
    try:
        identities = json.loads(identities_file.read_text(encoding="utf-8"))
        known = identities[str(folder)]
        if known["stamp"] == stamp:
            return f"{folder}#{known['hash']}"
    except (OSError, ValueError, KeyError, TypeError):  # not cached yet, or a damaged cache: hash again
        pass
    if not isinstance(identities, dict):
        identities = {}
    digest = weights_hash(folder)
    identities[str(folder)] = {"stamp": stamp, "hash": digest}
    try:
        identities_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(identities_file) as handle:
            handle.write(json.dumps(identities, indent=1))
    except OSError:  # a read-only cache costs a hash per run, nothing else
        pass
    return f"{folder}#{digest}"


def names_model(stored, model, identity):
    """True when an index's stored model identity is `model`'s (`identity`, its model_identity). Indexes written
    before identities used file_hashes.weights_hash stored `path#<16 hex of the top-level weight files' bytes>`: they
    still match (and are saved under the current identity at their next update)."""
    if stored == identity:
        return True
    folder = Path(model)
    if not folder.is_dir() or not stored.startswith(f"{folder.resolve()}#") or "#sha256-" in stored:
        return False
    digest = hashlib.sha256()
    for weights in sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin")):
        update_digest(digest, weights)
    return stored == f"{folder.resolve()}#{digest.hexdigest()[:16]}"
