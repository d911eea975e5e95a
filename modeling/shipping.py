"""Making a shipped model: a trained folder stored small (float16 weights) inside the package, with the current
remote code."""

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mamba_retrieval.modeling.data_files import atomic_file
from mamba_retrieval.modeling.hub_folder import REMOTE_CODE_FILES, check_output_dir, staged_folder
from mamba_retrieval.modeling.pretrained import DEFAULT_MODEL, PRETRAINED_DIR


def write_shipped_copy(trained_folder, out_dir, force=False, max_seq_length=None):
    """Copy a trained Hub folder into `out_dir` with its floating-point weights stored as float16 (half the size,
    for the repository) while config.json keeps float32, so transformers and sentence-transformers load and run
    it in float32. `max_seq_length` replaces the folder's token limit (sentence-transformers' and the tokenizer's).
    Returns the largest absolute difference between the two folders' embeddings of a probe text."""
    trained_folder = Path(trained_folder)
    check_output_dir(out_dir, force, sources=[trained_folder])
    with staged_folder(out_dir, force) as staging:
        shutil.copytree(trained_folder, staging, dirs_exist_ok=True)
        weights = load_file(trained_folder / "model.safetensors")
        save_file(
            {name: tensor.half() if tensor.is_floating_point() else tensor for name, tensor in weights.items()},
            staging / "model.safetensors",
            metadata={"format": "pt"},
        )
        limits = {"sentence_bert_config.json": "max_seq_length", "tokenizer_config.json": "model_max_length"}
        for name, key in limits.items() if max_seq_length else ():
            settings = json.loads((staging / name).read_text())
            settings[key] = max_seq_length
            (staging / name).write_text(json.dumps(settings, indent=2) + "\n")
    probe = ["Mamba is a selective state-space model; this sentence checks the stored copy."]
    from sentence_transformers import SentenceTransformer

    embeddings = [
        SentenceTransformer(str(folder), trust_remote_code=True, device="cpu").encode(probe)
        for folder in (trained_folder, out_dir)
    ]
    return float(abs(torch.tensor(embeddings[0]) - torch.tensor(embeddings[1])).max())


def refresh_remote_code(folder=None):
    """Copy the current remote code (hub_folder.REMOTE_CODE_FILES) into a shipped folder, so that it runs the code the
    tests check. Returns the files that changed."""
    folder = Path(folder or PRETRAINED_DIR / DEFAULT_MODEL)
    changed = []
    for source in REMOTE_CODE_FILES:
        target = folder / source.name
        if not target.is_file() or target.read_bytes() != source.read_bytes():
            with atomic_file(target, "wb") as handle:
                handle.write(source.read_bytes())
            changed.append(target)
    return changed
