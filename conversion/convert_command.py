"""`mamba-retrieval convert SRC OUT`: a research or base checkpoint -> a Hub folder, strict and verified.

Steps: read SRC by its format's explicit key map (conversion/formats.py); build the retriever(s), failing on any
missing or unexpected key; write the Hub folder into a temporary folder; reload it from disk with AutoModel and
compare it with transformers' own MambaModel / Mamba2Model on the source weights; write conversion.json (format,
source file hashes, parity); only then move the folder into place.
"""

import copy
import json
from pathlib import Path

import torch
import transformers

from mamba_retrieval.conversion.checkpoint_files import sha256
from mamba_retrieval.conversion.formats import FORMATS, detect_format, read_source
from mamba_retrieval.conversion.parity import PARITY_TEXTS, TOLERANCE, compare_with_reference, within_tolerance
from mamba_retrieval.conversion.spscanner import convert_spscanner, print_report
from mamba_retrieval.conversion.strict_loading import load_into_retriever
from mamba_retrieval.conversion.tevatron_format import SHARED
from mamba_retrieval.modeling.hub_folder import (check_output_dir, staged_folder, write_hub_contents,
                                                 write_query_document_contents)
from mamba_retrieval.modeling.init_command import DTYPES
from mamba_retrieval.modeling.tokenizer import ENDOFTEXT, VENDORED_TOKENIZER, build_tokenizer, check_eos_fits

REPORT_FILE = "conversion.json"


def convert_checkpoint(src, out_dir, *, format=None, eos_token=ENDOFTEXT, dtype=None, max_seq_length=512,
                       prompts=None, force=False):
    """Convert the checkpoint folder `src` into a Hub folder at `out_dir`; returns the report (also written to
    `out_dir/conversion.json`). Nothing is written unless every check passes."""
    src, out_dir = Path(src).absolute(), Path(out_dir).absolute()
    check_output_dir(out_dir, force)  # before any slow reading
    if (format or detect_format(src)) == "spscanner":
        # a scanner reads plain text (no EOS, no prompts) and is checked on its sentence logits
        if eos_token != ENDOFTEXT or any((prompts or {}).values()):
            raise ValueError("--eos-token and the prompts do not apply to an SPScanner checkpoint: a scanner reads "
                             "question + document as plain text.")
        return convert_spscanner(src, out_dir, dtype=dtype, force=force)
    source = read_source(src, format)
    tokenizer = build_tokenizer(eos_token, model_max_length=max_seq_length,
                                tokenizer_file=source.tokenizer_file or VENDORED_TOKENIZER)
    check_eos_fits(tokenizer, source.config.vocab_size)
    source.config.eos_token_id = tokenizer.eos_token_id
    source.config.pad_token_id = tokenizer.pad_token_id
    models = {role: load_into_retriever(copy.deepcopy(source.config), weights)
              for role, weights in source.encoders.items()}
    source_dtypes = {t.dtype for weights in source.encoders.values() for t in weights.values()}
    embedding_dtype = next(iter(models.values())).backbone.embeddings.weight.dtype
    out_dtype = DTYPES[dtype] if dtype is not None else embedding_dtype
    models = {role: model.to(out_dtype) for role, model in models.items()}

    with staged_folder(out_dir, force) as staging:
        if set(models) == {SHARED}:
            write_hub_contents(models[SHARED], tokenizer, staging, max_seq_length=max_seq_length, prompts=prompts)
        else:
            write_query_document_contents(models, tokenizer, staging, max_seq_length=max_seq_length,
                                          prompts=prompts)
        parity = {role: compare_with_reference(staging, source.config, source.encoders[role], out_dtype,
                                               subfolder="" if role == SHARED else role)
                  for role in source.encoders}
        failed = {role: result for role, result in parity.items() if not within_tolerance(result)}
        if failed:
            raise ValueError(f"Parity check failed: the written folder differs from the source weights run by "
                             f"transformers ({failed}; tolerance {TOLERANCE:g}, float32); nothing was written.")
        report = {
            "source": src.name,  # the folder's name only: the report travels with the Hub folder
            "format": source.format,
            "source_files": {str(path.relative_to(src)): sha256(path)
                             for path in source.files + [source.tokenizer_file] if path is not None},
            "tokenizer": str(source.tokenizer_file.relative_to(src)) if source.tokenizer_file else
                         "GPT-NeoX-20B (vendored in mamba-retrieval)",
            "backbone": source.config.backbone,
            "encoders": sorted(source.encoders),
            "source_dtypes": sorted(str(d).removeprefix("torch.") for d in source_dtypes),
            "dtype": str(out_dtype).removeprefix("torch."),
            "eos_token": tokenizer.eos_token,
            "eos_token_id": tokenizer.eos_token_id,
            "notes": source.notes,
            "parity": {
                "reference": "transformers MambaModel" if source.config.backbone == "mamba" else
                             "transformers Mamba2Model",
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


def register(subparsers):
    parser = subparsers.add_parser(
        "convert", help="convert a research or base checkpoint into a retriever Hub folder",
        description="Convert the checkpoint folder SRC into a retriever Hub folder OUT, strictly (every missing or "
                    "unexpected key is an error) and verified (OUT is reloaded and compared with transformers' "
                    "MambaModel / Mamba2Model on the source weights). Formats: "
                    + "; ".join(f"{name}: {fmt.description}" for name, fmt in FORMATS.items()) + ".")
    parser.add_argument("src", help="checkpoint folder")
    parser.add_argument("out", help="output folder (must not exist or be empty, unless --force)")
    parser.add_argument("--format", choices=list(FORMATS), help="source format (default: detected)")
    parser.add_argument("--eos-token", default=ENDOFTEXT,
                        help="token appended to every text and pooled: <|endoftext|> (id 0, default) or <EOS> "
                             "(added as id 50277, the Mamba Retriever recipe)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="weight dtype (default: the source's)")
    parser.add_argument("--max-seq-length", type=int, default=512, help="tokens per text, EOS included")
    parser.add_argument("--query-prompt", default="", help="text prepended to queries")
    parser.add_argument("--document-prompt", default="", help="text prepended to documents")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run)


def run(args):
    report = convert_checkpoint(args.src, args.out, format=args.format, eos_token=args.eos_token, dtype=args.dtype,
                                max_seq_length=args.max_seq_length, force=args.force,
                                prompts={"query": args.query_prompt, "document": args.document_prompt})
    if "parity_after_reload" in report:  # an SPScanner folder
        print_report(report)
        print(f"wrote {Path(args.out).absolute()}")
        return
    parity = report["parity"]
    print(f"format: {report['format']} ({report['backbone']}, encoders: {', '.join(report['encoders'])}, "
          f"dtype {report['dtype']}, EOS {report['eos_token']} = id {report['eos_token_id']})")
    for role, diff in parity["max_abs_diff"].items():
        print(f"parity ({role}): max |folder - {parity['reference']}| = {diff:.3g} over {parity['texts']} texts, "
              f"float32 (largest value {parity['reference_max_abs'][role]:.3g}; tolerance {parity['tolerance']:g})")
    print(f"wrote {Path(args.out).absolute()}")
