"""SPScanner checkpoints (`MambaRetriever/SPScanner-130m`, `-1.3b`) -> scanner Hub folders, strictly.

A checkpoint is mamba_ssm's: `config.json` (its MambaConfig, `ssm_cfg: {"layer": "Mamba2"}`, vocab 50277 padded to
50288, tied embeddings) and `pytorch_model.bin` with `backbone.*`, the tied `lm_head.weight` and the scanner's
`binary_head.weight` [1, d_model] + `binary_head.bias` [1]. The config and backbone keys are read with
`mamba_ssm_format` (mamba_ssm's defaults, explicit key map); the tied LM head is dropped after checking that it
equals the embedding; every other key must be exactly the model's (no `strict=False`). Parity: the converted model's
sentence logits are compared with an independent reference (transformers' `Mamba2Model` + the head, built from the
source tensors by their own key names), before writing and again after reloading the written folder; the report
is printed and stored in the folder as `conversion.json` (the report every format writes).
"""

import json
from pathlib import Path

import torch
import transformers
from transformers import AutoModel

from mamba_retrieval.conversion.checkpoint_files import CheckpointKeyError, read_state_dict, weight_files, weight_keys
from mamba_retrieval.conversion.mamba_ssm_format import config_from_mamba_ssm, is_mamba_ssm_config, map_mamba_ssm_keys
from mamba_retrieval.conversion.parity import REPORT_FILE
from mamba_retrieval.conversion.spscanner_reference import TransformersScannerReference
from mamba_retrieval.conversion.transformers_lm import COPIED_FIELDS
from mamba_retrieval.modeling.configuration_mamba_retrieval import MambaScannerConfig
from mamba_retrieval.modeling.data_files import read_json_object
from mamba_retrieval.modeling.dtypes import dtype_name, torch_dtype
from mamba_retrieval.modeling.file_hashes import file_sha256
from mamba_retrieval.modeling.hub_folder import check_output_dir, staged_folder, write_scanner_contents
from mamba_retrieval.modeling.modeling_mamba_retrieval import MambaForSentenceScoring
from mamba_retrieval.modeling.scanner.sentence_scanner import UNBOUNDED_LENGTH, build_scanner_tokenizer
from mamba_retrieval.modeling.tokenizer import ENDOFTEXT

HEAD_KEYS = ("binary_head.weight", "binary_head.bias")
# The fields a scanner takes from the backbone config that mamba_ssm's config.json describes.
BACKBONE_FIELDS = (*COPIED_FIELDS["mamba2"], "eos_token_id")
# Parity tolerance (fp32, relative to the largest reference logit), as the reference-parity tests use.
PARITY_TOLERANCE = 1e-5


def is_spscanner_checkpoint(config_dict, state_dict_keys):
    """True for a mamba_ssm Mamba-2 config.json whose weights carry SPScanner's `binary_head.*`."""
    return (
        is_mamba_ssm_config(config_dict)
        and (config_dict.get("ssm_cfg") or {}).get("layer") == "Mamba2"
        and all(key in state_dict_keys for key in HEAD_KEYS)
    )


def detect_spscanner(folder):
    """Format detection for `convert`: a folder holding an SPScanner checkpoint (keys read without the tensors).
    Must be tried before the plain mamba_ssm format, whose config.json it shares."""
    config_path = Path(folder) / "config.json"
    if not config_path.is_file():
        return False
    config_dict = read_json_object(config_path)
    return is_spscanner_checkpoint(config_dict, set(weight_keys(folder))) if is_mamba_ssm_config(config_dict) else False


def scanner_config_from_mamba_ssm(config_dict):
    backbone = config_from_mamba_ssm(config_dict)
    if backbone.backbone != "mamba2":
        raise ValueError("An SPScanner checkpoint has a Mamba-2 backbone (ssm_cfg.layer = 'Mamba2').")
    return MambaScannerConfig(**{field: getattr(backbone, field) for field in BACKBONE_FIELDS})


def load_spscanner_checkpoint(src):
    """(model, source state dict, mamba_ssm config dict) from an SPScanner checkpoint folder; exact keys."""
    src = Path(src)
    config_path = src / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{src} has no config.json; expected an SPScanner checkpoint folder "
            "(mamba_ssm config.json + pytorch_model.bin)."
        )
    config_dict = read_json_object(config_path)
    state_dict = read_state_dict(src)
    if not is_spscanner_checkpoint(config_dict, state_dict):
        raise ValueError(
            f"{src} is not an SPScanner checkpoint: expected a mamba_ssm config.json with ssm_cfg.layer "
            f"'Mamba2' and weights with {', '.join(HEAD_KEYS)}."
        )
    config = scanner_config_from_mamba_ssm(config_dict)
    mapped = map_mamba_ssm_keys(state_dict, config, tie_embeddings=config_dict.get("tie_embeddings", True))
    with torch.device("meta"):
        model = MambaForSentenceScoring(config)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(mapped)), sorted(set(mapped) - set(expected))
    if missing or unexpected:
        raise CheckpointKeyError(
            f"The checkpoint does not match an SPScanner of its config.json. Missing keys: "
            f"{missing or 'none'}. Unexpected keys: {unexpected or 'none'}."
        )
    wrong = [
        f"{k}: {tuple(mapped[k].shape)} != {tuple(p.shape)}"
        for k, p in expected.items()
        if tuple(mapped[k].shape) != tuple(p.shape)
    ]
    if wrong:
        raise ValueError("Tensor shapes do not match config.json: " + "; ".join(wrong))
    model.load_state_dict(mapped, strict=True, assign=True)
    return model.eval(), state_dict, config_dict


def reference_from_source(config, state_dict):
    """transformers' Mamba2Model + head on the source tensors, mapped by their own names (mamba_ssm's
    `backbone.embedding` / `backbone.layers` / `backbone.norm_f` are Mamba2Model's `embeddings` / `layers` /
    `norm_f`), in float32."""
    backbone = {}
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            name = key.removeprefix("backbone.")
            backbone["embeddings.weight" if name == "embedding.weight" else name] = value.float()
    return TransformersScannerReference(
        config, backbone, state_dict["binary_head.weight"].float(), state_dict["binary_head.bias"].float()
    )


def parity_inputs(config, seed=0, length=None, n_sentences=12):
    """A deterministic batch: random tokens over several scan chunks, sentence ends spread over it, one padded row."""
    generator = torch.Generator().manual_seed(seed)
    length = length or 3 * config.chunk_size + 17
    input_ids = torch.randint(2, min(config.vocab_size, 50277), (2, length), generator=generator)
    ends = torch.linspace(length // n_sentences, length - 1, n_sentences).round().long()
    positions = torch.stack([ends, torch.where(torch.arange(n_sentences) < n_sentences - 3, ends, -1)])
    return input_ids, positions


@torch.inference_mode()
def logits_parity(model, reference, inputs):
    """Max |ours - reference| over real sentences, the reference's scale, and whether their rankings agree."""
    input_ids, positions = inputs
    ours = model.float()(input_ids=input_ids, sentence_end_positions=positions).logits
    theirs = reference(input_ids, positions).logits
    real = positions >= 0
    difference = float((ours[real] - theirs[real]).abs().max())
    scale = float(theirs[real].abs().max())
    same_order = all(
        torch.equal(ours[row][real[row]].argsort(descending=True), theirs[row][real[row]].argsort(descending=True))
        for row in range(len(real))
    )
    return {
        "max_abs_difference": difference,
        "reference_scale": scale,
        "relative_difference": difference / max(scale, 1e-12),
        "same_ranking": same_order,
        "ours": ours[real].tolist(),
        "reference": theirs[real].tolist(),
    }


def convert_spscanner(src, out, dtype=None, force=False, *, eos_token=ENDOFTEXT, prompts=None, max_seq_length=None):
    """Convert an SPScanner checkpoint folder into a scanner Hub folder at `out`; returns the report (also written
    to `out/conversion.json`). The folder is written to a staging folder, reloaded from there and checked against
    the reference; only then is it moved into place. `max_seq_length` does not apply: a scanner windows its input."""
    if eos_token != ENDOFTEXT or any((prompts or {}).values()):
        raise ValueError(
            "--eos-token and the prompts do not apply to an SPScanner checkpoint: a scanner reads "
            "question + document as plain text."
        )
    src = Path(src).absolute()
    check_output_dir(out, force, sources=[src])
    target_dtype = torch_dtype(dtype)
    model, state_dict, config_dict = load_spscanner_checkpoint(src)
    reference = reference_from_source(model.config, state_dict)
    inputs = parity_inputs(model.config)
    before = logits_parity(_float_copy(model), reference, inputs)
    _check_parity(before, "before writing")
    target_dtype = target_dtype or model.dtype
    with staged_folder(out, force) as staging:
        write_scanner_contents(
            model.to(target_dtype), build_scanner_tokenizer(), staging, max_seq_length=UNBOUNDED_LENGTH
        )
        reloaded = AutoModel.from_pretrained(staging, trust_remote_code=True).eval()
        _check_weights(reloaded, model)
        after = logits_parity(_float_copy(reloaded), reference, inputs)
        if target_dtype == torch.float32:
            _check_parity(after, "after reloading the written folder")
        report = {
            "source": src.name,  # the folder's name only: the report travels with the Hub folder
            "format": "spscanner",
            "source_files": {
                str(path.relative_to(src)): file_sha256(path) for path in [src / "config.json", *weight_files(src)]
            },
            "backbone": "mamba2",
            "source_dtypes": sorted({dtype_name(t.dtype) for t in state_dict.values() if t.is_floating_point()}),
            "dtype": dtype_name(target_dtype),
            "config": {field: getattr(model.config, field) for field in BACKBONE_FIELDS},
            "dropped_keys": ["lm_head.weight (tied: equal to backbone.embedding.weight)"]
            if "lm_head.weight" in state_dict
            else [],
            "parity": {
                "reference": "transformers Mamba2Model + Linear head on the source tensors",
                "compared": "sentence logits, float32, before writing and after reloading the written folder",
                "before_writing": _summary(before),
                "after_reload": _summary(after),
                "tolerance": PARITY_TOLERANCE,
                "rule": "relative_difference <= tolerance (after reload: float32 folders only)",
            },
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
        }
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _float_copy(model):
    copy = type(model)(model.config).eval()
    copy.load_state_dict({k: v.float() for k, v in model.state_dict().items()}, strict=True)
    return copy


def _check_parity(parity, when):
    if parity["relative_difference"] > PARITY_TOLERANCE:
        raise ValueError(
            f"Sentence logits differ from the transformers reference {when}: max |difference| "
            f"{parity['max_abs_difference']:.3g} on a scale of {parity['reference_scale']:.3g}."
        )


def _check_weights(reloaded, model):
    theirs = reloaded.state_dict()
    different = [k for k, v in model.state_dict().items() if k not in theirs or not torch.equal(theirs[k], v)]
    if different or set(theirs) != set(model.state_dict()):
        raise ValueError(f"The written folder does not hold the converted weights: {different[:10]}")


def _summary(parity):
    return {
        key: parity[key] for key in ("max_abs_difference", "reference_scale", "relative_difference", "same_ranking")
    }


def describe(report):
    """The lines `convert` prints for an SPScanner report."""
    parity = report["parity"]
    lines = [f"format: spscanner (mamba2 scanner, dtype {report['dtype']})"]
    for when in ("before_writing", "after_reload"):
        result = parity[when]
        lines.append(
            f"parity {when.replace('_', ' ')}: max |logit difference| {result['max_abs_difference']:.3g} "
            f"(reference scale {result['reference_scale']:.3g}, relative "
            f"{result['relative_difference']:.3g}), same ranking: {result['same_ranking']}"
        )
    return lines
