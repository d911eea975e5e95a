"""Write a complete, self-contained Hub folder for a retriever and its tokenizer.

The folder holds everything `AutoModel.from_pretrained(dir, trust_remote_code=True)` and
`SentenceTransformer(dir, trust_remote_code=True)` need, offline: `config.json` whose `auto_map` points at the two
remote-code files copied beside it, `model.safetensors`, the tokenizer, the sentence-transformers pipeline
(Transformer -> Pooling lasttoken -> Normalize, in the format every sentence-transformers version reads) and a model
card. It is written to a temporary folder next to the target and moved into place only when complete.
"""

import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import sentence_transformers
import torch
import transformers

from mamba_retrieval.modeling import configuration_mamba_retrieval, cpu_scan, modeling_mamba_retrieval
from mamba_retrieval.modeling.tokenizer import appends_eos

# The model's code, copied into every folder: what `trust_remote_code` runs, needing torch and transformers (and
# numba for the fused CPU scan of cpu_scan.py, which modeling_mamba_retrieval imports relatively)
REMOTE_CODE_FILES = (
    Path(configuration_mamba_retrieval.__file__),
    Path(modeling_mamba_retrieval.__file__),
    Path(cpu_scan.__file__),
)
AUTO_MAP = {
    "AutoConfig": "configuration_mamba_retrieval.MambaRetrievalConfig",
    "AutoModel": "modeling_mamba_retrieval.MambaForRetrieval",
}
DEFAULT_PROMPTS = {"query": "", "document": ""}
# Keys that describe how a tokenizer was loaded, not what it is; they break loading elsewhere.
LOAD_TIME_TOKENIZER_KEYS = (
    "is_local",
    "local_files_only",
    "name_or_path",
    "_commit_hash",
    "cache_dir",
    "token",
    "revision",
    "trust_remote_code",
)
SENTENCE_TRANSFORMERS_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]
# Two encoders (untied query / document weights): a Router in place of the Transformer module.
ROUTES = ("query", "document")
ROUTER_MODULE = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Router"}
# SPScanner folders (model_type "mamba_scanner"): their own classes, and no sentence-transformers pipeline (a scanner
# scores the sentences of one question + document pass; it does not embed texts).
SCANNER_AUTO_MAP = {
    "AutoConfig": "configuration_mamba_retrieval.MambaScannerConfig",
    "AutoModel": "modeling_mamba_retrieval.MambaForSentenceScoring",
}


def check_output_dir(out_dir, force=False, sources=()):
    """Refuse to replace an existing, non-empty folder unless `force`: a user's files are never lost silently. An
    output folder that is, or holds, one of the `sources` being read is refused even with `force`."""
    out_dir = Path(out_dir)
    for source in sources:
        source = Path(source)
        if source.exists() and source.resolve().is_relative_to(out_dir.resolve()):
            raise ValueError(
                f"The output folder {out_dir} is or holds the source {source}: writing it would destroy what is "
                "being read. Choose another output folder."
            )
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder; choose another output path.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise FileExistsError(
            f"{out_dir} exists and is not empty; choose another output folder or pass --force to replace it."
        )


def write_hub_folder(
    model, tokenizer, out_dir, *, max_seq_length, prompts=None, card=None, extra_files=None, force=False
):
    """Write `model` + `tokenizer` as a Hub folder at `out_dir`; returns the folder's path.

    max_seq_length: tokens per text, EOS included (sentence-transformers truncates there).
    prompts: {"query": ..., "document": ...} prepended by sentence-transformers' encode_query / encode_document.
    card: README.md text; a basic card is written when None.
    extra_files: {relative name: text} written into the folder too (e.g. a conversion report).
    """
    with staged_folder(out_dir, force) as staging:
        write_hub_contents(
            model,
            tokenizer,
            staging,
            max_seq_length=max_seq_length,
            prompts=prompts,
            card=card,
            extra_files=extra_files,
        )
    return Path(out_dir).absolute()


@contextmanager
def staged_folder(out_dir, force=False):
    """Yield an empty temporary folder next to `out_dir`; it becomes `out_dir` when the block completes and is
    removed when the block fails, so a failure never leaves a half-written folder."""
    out_dir = Path(out_dir).absolute()
    recover_interrupted(out_dir)  # first: a folder it restores is the user's, kept unless `force`
    check_output_dir(out_dir, force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        yield staging
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_hub_contents(model, tokenizer, folder, *, max_seq_length, prompts=None, card=None, extra_files=None):
    """The files of a Hub folder, written into the existing folder `folder` (see write_hub_folder)."""
    folder = Path(folder)
    if not appends_eos(tokenizer):
        raise ValueError(
            "The tokenizer does not append its EOS token; build it with "
            "mamba_retrieval.modeling.tokenizer.build_tokenizer()."
        )
    prompts = {**DEFAULT_PROMPTS, **(prompts or {})}
    model.config.auto_map = dict(AUTO_MAP)
    model.save_pretrained(folder, safe_serialization=True)
    _copy_remote_code(folder)
    _write_tokenizer(tokenizer, folder, max_seq_length)
    _write_sentence_transformers_files(folder, model.config.hidden_size, max_seq_length, prompts)
    (folder / "README.md").write_text(card if card is not None else basic_card(model.config, prompts))
    _write_extra_files(folder, extra_files)


def write_query_document_contents(
    models, tokenizer, folder, *, max_seq_length, prompts=None, card=None, extra_files=None
):
    """A Hub folder with two encoders, `models = {"query": ..., "document": ...}` (untied query/passage weights).

    Each encoder is a complete Hub folder in its own subfolder (`query/`, `document/`), loaded with
    `AutoModel.from_pretrained(folder, subfolder="query", trust_remote_code=True)`. At the top, sentence-transformers'
    `Router` sends `encode_query` through `query/` and `encode_document` (and plain `encode`) through `document/`,
    then the shared Pooling(lasttoken) -> Normalize. The remote-code files are copied to the top as well, because
    transformers looks for remote code at the top of a repository even when loading a subfolder.
    """
    folder = Path(folder)
    prompts = {**DEFAULT_PROMPTS, **(prompts or {})}
    if set(models) != set(ROUTES):
        raise ValueError(f"Expected encoders for {ROUTES}, got {sorted(models)}.")
    for route in ROUTES:
        (folder / route).mkdir()
        write_hub_contents(
            models[route],
            tokenizer,
            folder / route,
            max_seq_length=max_seq_length,
            prompts=prompts,
            card=f"The {route} encoder of the retriever one folder up; see its README.md.\n",
        )
    _copy_remote_code(folder)
    config = models["document"].config
    _write_sentence_transformers_files(folder, config.hidden_size, max_seq_length, prompts, routed=True)
    _write_json(
        folder / "router_config.json",
        {
            "types": {route: SENTENCE_TRANSFORMERS_MODULES[0]["type"] for route in ROUTES},
            "structure": {route: [route] for route in ROUTES},
            "parameters": {"default_route": "document", "allow_empty_key": True, "route_mappings": {}},
        },
    )
    (folder / "README.md").write_text(card if card is not None else query_document_card(config, prompts))
    _write_extra_files(folder, extra_files)


def write_scanner_contents(model, tokenizer, folder, *, max_seq_length, card=None, extra_files=None):
    """The files of an SPScanner Hub folder (see scanner.sentence_scanner.write_scanner_folder)."""
    folder = Path(folder)
    if tokenizer("a")["input_ids"] != tokenizer("a", add_special_tokens=False)["input_ids"]:
        raise ValueError(
            "A scanner reads plain text: its tokenizer must add no special tokens; build it with "
            "mamba_retrieval.modeling.scanner.sentence_scanner.build_scanner_tokenizer()."
        )
    model.config.auto_map = dict(SCANNER_AUTO_MAP)
    model.save_pretrained(folder, safe_serialization=True)
    _copy_remote_code(folder)
    _write_tokenizer(tokenizer, folder, max_seq_length)
    (folder / "README.md").write_text(card if card is not None else scanner_card(model.config))
    _write_extra_files(folder, extra_files)


def _copy_remote_code(folder):
    for source in REMOTE_CODE_FILES:
        shutil.copyfile(source, folder / source.name)


def _write_extra_files(folder, extra_files):
    for name, text in (extra_files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def _write_tokenizer(tokenizer, folder, max_seq_length):
    tokenizer.save_pretrained(folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    for key in LOAD_TIME_TOKENIZER_KEYS:
        config.pop(key, None)
    config["model_max_length"] = max_seq_length
    # The generic class name that every transformers version maps to a fast tokenizer over tokenizer.json.
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    _write_json(config_path, config)


def _write_sentence_transformers_files(folder, dimension, max_seq_length, prompts, routed=False):
    if routed:
        _write_json(folder / "modules.json", [ROUTER_MODULE] + SENTENCE_TRANSFORMERS_MODULES[1:])
    else:
        _write_json(folder / "modules.json", SENTENCE_TRANSFORMERS_MODULES)
        _write_json(folder / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    _write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": dimension,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": False,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": True,
            "include_prompt": True,
        },
    )
    (folder / "2_Normalize").mkdir(exist_ok=True)
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "__version__": {
                "sentence_transformers": sentence_transformers.__version__,
                "transformers": transformers.__version__,
                "pytorch": torch.__version__,
            },
            "prompts": prompts,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


def _write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def recover_interrupted(out_dir):
    """Undo what a killed write left beside `out_dir`: the old folder moved aside (`.NAME.old-*/NAME`) comes back
    when `out_dir` is missing, and is removed when the new one is in place; unfinished `.NAME.partial-*` folders
    are removed."""
    out_dir = Path(out_dir).absolute()
    for aside in sorted(out_dir.parent.glob(f".{out_dir.name}.old-*")):
        if not out_dir.exists() and (aside / out_dir.name).is_dir():
            os.rename(aside / out_dir.name, out_dir)
            print(f"restored {out_dir} from {aside}, left by an interrupted write", file=sys.stderr)
        shutil.rmtree(aside, ignore_errors=True)
    for partial in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        shutil.rmtree(partial, ignore_errors=True)


def _move_into_place(staging, out_dir):
    """Swap the finished folder in; an old folder (only with force) is removed only after the swap."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.rename(out_dir, old / out_dir.name)
    os.rename(staging, out_dir)
    if old is not None:
        shutil.rmtree(old)


RETRIEVER_FRONT_MATTER = """---
library_name: sentence-transformers
pipeline_tag: sentence-similarity
tags:
- sentence-transformers
- feature-extraction
- mamba
- custom_code
---
"""


def basic_card(config, prompts):
    """A minimal model card; `mamba-retrieval card` renders the full one with evaluation results."""
    backbone = {"mamba": "Mamba-1", "mamba2": "Mamba-2"}[config.backbone]
    return (
        RETRIEVER_FRONT_MATTER
        + f"""
# {backbone} retriever

A bi-encoder over a {backbone} backbone ({config.num_hidden_layers} layers, width {config.hidden_size}). The
embedding of a text is the final-layer state at the EOS token that the tokenizer appends, L2-normalised; relevance
is cosine similarity. Made with [mamba-retrieval](https://pypi.org/project/mamba-retrieval/).

Query prompt: `{prompts["query"]!r}`; document prompt: `{prompts["document"]!r}`.

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("path/to/this/folder", trust_remote_code=True)
queries = model.encode_query(["what is a state-space model?"])
documents = model.encode_document(["Mamba is a selective state-space model."])
print(model.similarity(queries, documents))
```

```python
from transformers import AutoModel, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder", trust_remote_code=True)
model = AutoModel.from_pretrained("path/to/this/folder", trust_remote_code=True)
batch = tokenizer(["Mamba is a selective state-space model."], padding=True, return_tensors="pt")
embeddings = model(**batch).sentence_embedding  # (batch, {config.hidden_size}), L2-normalised
```

With numba installed the folder's `cpu_scan.py` runs the fused CPU scan; without it, the readable reference path.
With mamba-ssm and causal-conv1d, the CUDA kernels.
"""
    )


def query_document_card(config, prompts):
    """A minimal card for a folder with separate query and document encoders."""
    backbone = {"mamba": "Mamba-1", "mamba2": "Mamba-2"}[config.backbone]
    return (
        RETRIEVER_FRONT_MATTER
        + f"""
# {backbone} retriever with separate query and document encoders

Two {backbone} encoders ({config.num_hidden_layers} layers, width {config.hidden_size}) that embed into one space:
queries go through `query/`, documents through `document/`. The embedding of a text is the final-layer state at the
EOS token that the tokenizer appends, L2-normalised; relevance is cosine similarity. Made with
[mamba-retrieval](https://pypi.org/project/mamba-retrieval/).

Query prompt: `{prompts["query"]!r}`; document prompt: `{prompts["document"]!r}`.

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("path/to/this/folder", trust_remote_code=True)
queries = model.encode_query(["what is a state-space model?"])         # query/ encoder
documents = model.encode_document(["Mamba is a selective state-space model."])  # document/ encoder
print(model.similarity(queries, documents))
```

```python
from transformers import AutoModel, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder", subfolder="query", trust_remote_code=True)
query_encoder = AutoModel.from_pretrained("path/to/this/folder", subfolder="query", trust_remote_code=True)
document_encoder = AutoModel.from_pretrained("path/to/this/folder", subfolder="document", trust_remote_code=True)
batch = tokenizer([{prompts["query"]!r} + "what is a state-space model?"], padding=True, return_tensors="pt")
query_embeddings = query_encoder(**batch).sentence_embedding  # (batch, {config.hidden_size}), L2-normalised
```
"""
    )


def scanner_card(config):
    """A minimal model card for an SPScanner folder."""
    return f"""---
library_name: transformers
tags:
- mamba2
- spscanner
- long-document
- custom_code
---

# SPScanner (Mamba-2 sentence scanner)

One causal Mamba-2 pass ({config.num_hidden_layers} layers, width {config.hidden_size}) over
`question + "\\n" + document` scores every sentence unit of the document; the best units, in document order, are
the context an LLM answers from. Documents longer than {config.window_size:,} tokens are read in windows with
{config.stride:,} tokens between starts, each prefixed with the question; a unit's score is its mean logit over
the windows holding it. Made with [mamba-retrieval](https://pypi.org/project/mamba-retrieval/).

```python
from mamba_retrieval.modeling.scanner.sentence_scanner import SentenceScanner

scanner = SentenceScanner.from_pretrained("path/to/this/folder")
result = scanner.scan("What did the committee decide?", open("report.txt").read(), top_k=10)
print(result.context)
```

or `mamba-retrieval scan path/to/this/folder --question "..." --document report.txt`.
"""
