"""`mamba-retrieval convert SRC OUT`: a research or base checkpoint -> a Hub folder, strict and verified.

`FORMATS` is the one dispatch over source formats: name -> (detect, convert, describe); their names and descriptions
are `format_names.FORMAT_DESCRIPTIONS`.
Detection tries the entries in order; `--format` picks one directly. Every converter checks OUT first, reads SRC by
its format's explicit key map (failing on any missing or unexpected key), writes the folder into a staging folder,
reloads it from there and compares it with an independent reference on the source weights (transformers' MambaModel
/ Mamba2Model, + the head for SPScanner), writes `conversion.json` (format, source file hashes, parity, versions)
and only then moves the folder into place.
"""

import copy
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import torch
import transformers

from mamba_retrieval.conversion import spscanner
from mamba_retrieval.conversion.format_names import FORMAT_DESCRIPTIONS
from mamba_retrieval.conversion.formats import (
    detect_mamba_ssm,
    detect_tevatron,
    detect_transformers,
    read_mamba_ssm,
    read_tevatron,
    read_transformers,
)
from mamba_retrieval.conversion.parity import (
    PARITY_TEXTS,
    REPORT_FILE,
    TOLERANCE,
    compare_with_reference,
    within_tolerance,
)
from mamba_retrieval.conversion.strict_loading import load_into_retriever
from mamba_retrieval.conversion.tevatron_format import SHARED
from mamba_retrieval.modeling.dtypes import dtype_name, torch_dtype
from mamba_retrieval.modeling.file_hashes import file_sha256
from mamba_retrieval.modeling.hub_folder import (
    check_output_dir,
    staged_folder,
    write_hub_contents,
    write_query_document_contents,
)
from mamba_retrieval.modeling.tokenizer import ENDOFTEXT, VENDORED_TOKENIZER, build_tokenizer, check_eos_fits


@dataclass(frozen=True)
class Format:
    detect: Callable[[Path], bool]
    convert: Callable  # (src, out_dir, *, dtype, force, eos_token, prompts, max_seq_length) -> report
    describe: Callable  # report -> the lines `convert` prints
    read: Optional[Callable] = None  # retriever formats: folder -> formats.Source


def convert_checkpoint(
    src, out_dir, *, format=None, eos_token=ENDOFTEXT, dtype=None, max_seq_length=512, prompts=None, force=False
):
    """Convert the checkpoint folder `src` into a Hub folder at `out_dir`; returns the report (also written to
    `out_dir/conversion.json`). Nothing is written unless every check passes."""
    src, out_dir = Path(src).absolute(), Path(out_dir).absolute()
    check_output_dir(out_dir, force, sources=[src])  # before any slow reading
    torch_dtype(dtype)  # an unknown dtype is refused before any reading, whatever the format
    if format is not None and format not in FORMATS:
        raise ValueError(f"Unknown format {format!r}; choose one of {', '.join(FORMATS)}.")
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a folder; SRC must be a checkpoint folder.")
    return FORMATS[format or detect_format(src)].convert(
        src, out_dir, dtype=dtype, force=force, eos_token=eos_token, prompts=prompts, max_seq_length=max_seq_length
    )


def detect_format(folder):
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; SRC must be a checkpoint folder.")
    for name, fmt in FORMATS.items():
        if fmt.detect(folder):
            return name
    known = "; ".join(f"{name}: {FORMAT_DESCRIPTIONS[name]}" for name in FORMATS)
    raise ValueError(f"Cannot tell the format of {folder}. Known formats: {known}. Pass --format if it is one of them.")


def read_source(folder, format=None):
    """Read a retriever checkpoint `folder` as `format` (detected when None) into a formats.Source."""
    name = format or detect_format(folder)
    reader = FORMATS[name].read
    if reader is None:
        raise ValueError(f"{folder} is a {name} checkpoint: it converts into a scanner folder, not a retriever.")
    return reader(Path(folder))


def convert_retriever(
    src, out_dir, *, read, dtype=None, force=False, eos_token=ENDOFTEXT, prompts=None, max_seq_length=512
):
    """A retriever checkpoint (`read(src)` -> formats.Source) -> a retriever Hub folder; returns the report."""
    source = read(src)
    tokenizer = build_tokenizer(
        eos_token, model_max_length=max_seq_length, tokenizer_file=source.tokenizer_file or VENDORED_TOKENIZER
    )
    check_eos_fits(tokenizer, source.config.vocab_size)
    source.config.eos_token_id = tokenizer.eos_token_id
    source.config.pad_token_id = tokenizer.pad_token_id
    models = {
        role: load_into_retriever(copy.deepcopy(source.config), weights) for role, weights in source.encoders.items()
    }
    source_dtypes = {t.dtype for weights in source.encoders.values() for t in weights.values()}
    embedding_dtype = next(iter(models.values())).backbone.embeddings.weight.dtype
    out_dtype = torch_dtype(dtype) or embedding_dtype
    models = {role: model.to(out_dtype) for role, model in models.items()}

    with staged_folder(out_dir, force) as staging:
        if set(models) == {SHARED}:
            write_hub_contents(models[SHARED], tokenizer, staging, max_seq_length=max_seq_length, prompts=prompts)
        else:
            write_query_document_contents(models, tokenizer, staging, max_seq_length=max_seq_length, prompts=prompts)
        parity = {
            role: compare_with_reference(
                staging, source.config, source.encoders[role], out_dtype, subfolder="" if role == SHARED else role
            )
            for role in source.encoders
        }
        failed = {role: result for role, result in parity.items() if not within_tolerance(result)}
        if failed:
            raise ValueError(
                f"Parity check failed: the written folder differs from the source weights run by "
                f"transformers ({failed}; tolerance {TOLERANCE:g}, float32); nothing was written."
            )
        report = {
            "source": src.name,  # the folder's name only: the report travels with the Hub folder
            "format": source.format,
            "source_files": {
                str(path.relative_to(src)): file_sha256(path)
                for path in source.files + [source.tokenizer_file]
                if path is not None
            },
            "tokenizer": str(source.tokenizer_file.relative_to(src))
            if source.tokenizer_file
            else "GPT-NeoX-20B (vendored in mamba-retrieval)",
            "backbone": source.config.backbone,
            "encoders": sorted(source.encoders),
            "source_dtypes": sorted(dtype_name(d) for d in source_dtypes),
            "dtype": dtype_name(out_dtype),
            "eos_token": tokenizer.eos_token,
            "eos_token_id": tokenizer.eos_token_id,
            "notes": source.notes,
            "parity": {
                "reference": "transformers MambaModel"
                if source.config.backbone == "mamba"
                else "transformers Mamba2Model",
                "compared": "last-token hidden state, folder reloaded with AutoModel vs reference on the source "
                "weights, both float32",
                "texts": len(PARITY_TEXTS),
                "max_abs_diff": {role: result["max_abs_diff"] for role, result in parity.items()},
                "reference_max_abs": {role: result["reference_max_abs"] for role, result in parity.items()},
                "tolerance": TOLERANCE,
                "rule": "max_abs_diff <= tolerance * max(1, reference_max_abs)",
            },
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
        }
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def describe_retriever(report):
    """The lines `convert` prints for a retriever report."""
    parity = report["parity"]
    lines = [
        f"format: {report['format']} ({report['backbone']}, encoders: {', '.join(report['encoders'])}, "
        f"dtype {report['dtype']}, EOS {report['eos_token']} = id {report['eos_token_id']})"
    ]
    for role, diff in parity["max_abs_diff"].items():
        lines.append(
            f"parity ({role}): max |folder - {parity['reference']}| = {diff:.3g} over {parity['texts']} "
            f"texts, float32 (largest value {parity['reference_max_abs'][role]:.3g}; tolerance "
            f"{parity['tolerance']:g})"
        )
    return lines


def _retriever_format(detect, read):
    return Format(detect, partial(convert_retriever, read=read), describe_retriever, read)


# Keyed and ordered as format_names.FORMAT_DESCRIPTIONS (a test checks it). Tried in this order: SPScanner and tevatron
# before mamba_ssm, because their folders also have a mamba_ssm config.json.
FORMATS = {
    "spscanner": Format(spscanner.detect_spscanner, spscanner.convert_spscanner, spscanner.describe),
    "tevatron": _retriever_format(detect_tevatron, read_tevatron),
    "mamba_ssm": _retriever_format(detect_mamba_ssm, read_mamba_ssm),
    "transformers": _retriever_format(detect_transformers, read_transformers),
}
