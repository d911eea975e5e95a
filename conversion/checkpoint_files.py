"""Read the weights of a checkpoint folder: safetensors or PyTorch pickles, single file or sharded."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def weight_files(folder):
    """The weight files of `folder`, in load order; an error naming what was looked for when there are none."""
    folder = Path(folder)
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
    for name in INDEX_FILES:
        if (folder / name).is_file():
            index = json.loads((folder / name).read_text())
            return [folder / shard for shard in sorted(set(index["weight_map"].values()))]
    raise FileNotFoundError(f"No weights in {folder}: expected one of {', '.join(WEIGHT_FILES + INDEX_FILES)}.")


def read_weight_file(path):
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which file, not just the parser's complaint
        raise ValueError(f"Cannot read weights from {path} ({type(error).__name__}: {error}). "
                         "Is the file complete (not truncated by an interrupted download)?") from error


def read_state_dict(folder):
    state_dict = {}
    for path in weight_files(folder):
        shard = read_weight_file(path)
        if not isinstance(shard, dict):
            raise ValueError(f"{path} holds a {type(shard).__name__}, not a state dict.")
        state_dict.update(shard)
    return state_dict
