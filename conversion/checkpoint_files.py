"""Read the weights of a checkpoint folder: safetensors or PyTorch pickles, single file or sharded."""

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from tqdm.auto import tqdm

from mamba_retrieval.modeling.data_files import read_json_object
from mamba_retrieval.modeling.file_hashes import LARGE  # reading shows a progress bar from the same size
from mamba_retrieval.modeling.safe_paths import inside

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


class CheckpointKeyError(ValueError, KeyError):
    """A checkpoint's keys do not match the model it should fill: a fault of the user's file (shown as a one-line
    error by the CLI), not of the code."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def weight_files(folder):
    """The weight files of `folder`, in load order; an error naming what was looked for when there are none."""
    folder = Path(folder)
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
    for name in INDEX_FILES:
        if (folder / name).is_file():
            weight_map = read_json_object(folder / name).get("weight_map")
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise ValueError(f"{folder / name} has no weight_map of key -> shard file name.")
            return [inside(folder, shard, f"Shard of {name}") for shard in sorted(set(weight_map.values()))]
    raise FileNotFoundError(f"No weights in {folder}: expected one of {', '.join(WEIGHT_FILES + INDEX_FILES)}.")


def read_weight_file(path, keys_only=False):
    """The state dict in `path` (or, with keys_only, just its keys, without reading the tensors)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            if keys_only:
                with safe_open(str(path), framework="pt") as f:
                    return list(f.keys())
            return load_file(str(path))
        state_dict = None
        if keys_only:  # mmap: a pickle's keys without reading its tensors (zip format, torch >= 1.6 files)
            try:
                state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception:
                pass  # e.g. a legacy pickle: read it whole below, which reports a broken file
        if state_dict is None:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which file, not just the parser's complaint
        raise ValueError(
            f"Cannot read weights from {path} ({type(error).__name__}: {error}). "
            "Is the file complete (not truncated by an interrupted download)?"
        ) from error
    if not isinstance(state_dict, dict):
        raise ValueError(f"{path} holds a {type(state_dict).__name__}, not a state dict.")
    return list(state_dict) if keys_only else state_dict


def read_state_dict(folder):
    state_dict = {}
    files = weight_files(folder)
    large = sum(path.stat().st_size for path in files) >= LARGE
    for path in tqdm(files, desc=f"reading weights of {Path(folder).name}", unit="file", disable=not large):
        state_dict.update(read_weight_file(path))
    return state_dict


def weight_keys(folder):
    """The keys of a folder's weights, read without loading the tensors (for format detection)."""
    return [key for path in weight_files(folder) for key in read_weight_file(path, keys_only=True)]
