"""Scan a long document with an SPScanner model and pick the sentences an LLM should read.

The model reads `question.strip() + "\\n"` followed by a window of the document (120,000 tokens by default) and scores
every sentence unit in it. Longer documents are read in windows that overlap by half, each window prefixed with the
question again; a sentence's score is the mean of its logits over the windows that hold it. Windows start and end
at sentence boundaries, as in the original evaluation script (its `sliding_window`), so every unit is scored whole.
Windows are scored one at a time: memory is bounded by one window, whatever the document's length.
"""

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mamba_retrieval.modeling.configuration_mamba_retrieval import MambaScannerConfig
from mamba_retrieval.modeling.hub_folder import staged_folder, write_scanner_contents
from mamba_retrieval.modeling.modeling_mamba_retrieval import MambaForSentenceScoring
from mamba_retrieval.modeling.scanner.segmentation import segment_document
from mamba_retrieval.modeling.sizes import NAMED_SIZES
from mamba_retrieval.modeling.tokenizer import VENDORED_TOKENIZER, build_plain_tokenizer

# Documents are windowed by the scanner, never truncated by the tokenizer.
UNBOUNDED_LENGTH = 10**12


def build_scanner_tokenizer(tokenizer_file=VENDORED_TOKENIZER):
    """The plain GPT-NeoX-20B tokenizer the published scanners were trained with (no BOS/EOS added), unbounded:
    documents are windowed by the scanner, never truncated by the tokenizer."""
    return build_plain_tokenizer(UNBOUNDED_LENGTH, tokenizer_file)


def question_token_ids(tokenizer, question, suffix="\n"):
    """Tokens of the question prefix, built as in training: `question.strip() + suffix`."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("The question is empty; the scanner scores sentences against a question.")
    return tokenizer(question.strip() + suffix, add_special_tokens=False)["input_ids"]


def sentence_windows(end_positions, window_size, stride):
    """[(first, last)] sentence ranges of the windows over a document whose units end at `end_positions`.

    Each window holds whole units, at most `window_size` tokens unless a single unit is longer; the next window
    starts at the last unit start before `stride` tokens further on; the last window is aligned to the document's
    end and reaches back up to `window_size` tokens. Same windows as the original script for stride = size // 2.
    """
    if not end_positions:
        raise ValueError("No sentence units to scan.")
    ends = list(end_positions)
    starts = [0] + [end + 1 for end in ends[:-1]]
    windows, first = [], 0
    while True:
        # the last unit that ends inside [start, start + window_size), but at least the first unit
        last = max(first, _last_below(ends, starts[first] + window_size))
        if last == len(ends) - 1:
            # final window: aligned to the end of the document
            windows.append((min(bisect.bisect_left(starts, ends[-1] - window_size), last), last))
            return windows
        windows.append((first, last))
        # the next window starts at the last unit start before `stride` tokens on, and always moves forward
        first = max(_last_below(starts, starts[first] + stride), first + 1)


def _last_below(sorted_values, limit):
    """Index of the last value < limit (-1 when none)."""
    return bisect.bisect_left(sorted_values, limit) - 1


@torch.inference_mode()
def score_document(model, question_ids, document_ids, end_positions, window_size=None, stride=None):
    """Mean logit of every unit over the windows that hold it (float list, one per unit)."""
    config = model.config
    window_size = window_size or config.window_size
    stride = stride or (config.stride if window_size == config.window_size else window_size // 2)
    device = next(model.parameters()).device
    sums, counts = [0.0] * len(end_positions), [0] * len(end_positions)
    prefix = len(question_ids)
    for first, last in sentence_windows(end_positions, window_size, stride):
        start = 0 if first == 0 else end_positions[first - 1] + 1
        input_ids = torch.tensor([question_ids + document_ids[start : end_positions[last] + 1]], device=device)
        positions = torch.tensor([[prefix + end_positions[i] - start for i in range(first, last + 1)]], device=device)
        logits = model(input_ids=input_ids, sentence_end_positions=positions).logits[0].tolist()
        for offset, logit in enumerate(logits):
            sums[first + offset] += logit
            counts[first + offset] += 1
    return [total / count for total, count in zip(sums, counts)]


def top_k_count(n_sentences, top_k):
    """`top_k` >= 1: that many sentences; 0 < top_k < 1: a fraction, `max(10, ceil(n * top_k))` (the original)."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, float)) or not top_k > 0:
        raise ValueError(f"top_k must be a positive count, or a fraction in (0, 1); got {top_k!r}.")
    count = max(10, math.ceil(n_sentences * top_k)) if top_k < 1 else int(top_k)
    return min(count, n_sentences)


def top_k_indices(scores, top_k):
    """Indices of the best `top_k` scores, in document order; ties go to the earlier sentence."""
    ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
    return sorted(ranked[: top_k_count(len(scores), top_k)])


def join_context(units, indices):
    """The context an LLM reads: adjacent units joined directly, a newline where units were skipped."""
    context, previous = "", None
    for index in indices:
        if previous is not None:
            context += units[index] if index == previous + 1 else "\n" + units[index]
        else:
            context = units[index]
        previous = index
    return context


@dataclass
class ScanResult:
    """indices: the selected units, in document order; scores: their mean logits; context: their joined text;
    units / all_scores: every unit of the document and its score."""

    indices: list
    scores: list
    context: str
    units: list = field(repr=False)
    all_scores: list = field(repr=False)

    @property
    def sentences(self):
        return [self.units[i] for i in self.indices]


class SentenceScanner:
    """`SentenceScanner(model, tokenizer).scan(question, document, top_k=10)` with an SPScanner model
    (`MambaForSentenceScoring`)."""

    def __init__(self, model, tokenizer=None):
        if getattr(model.config, "model_type", None) != "mamba_scanner":
            raise ValueError(
                f"Expected an SPScanner model (model_type 'mamba_scanner'), got "
                f"{getattr(model.config, 'model_type', type(model).__name__)!r}."
            )
        self.model = model.eval()
        self.tokenizer = tokenizer if tokenizer is not None else build_scanner_tokenizer()

    @classmethod
    def from_pretrained(cls, path, **model_kwargs):
        """Load a scanner Hub folder (its own code, weights and tokenizer)."""
        from transformers import AutoModel

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a model folder (no config.json).")
        model = AutoModel.from_pretrained(path, trust_remote_code=True, **model_kwargs)
        tokenizer_file = path / "tokenizer.json"
        return cls(model, build_scanner_tokenizer(tokenizer_file if tokenizer_file.is_file() else VENDORED_TOKENIZER))

    def segment(self, document):
        config = self.model.config
        return segment_document(
            document, self.tokenizer, config.min_unit_tokens, config.max_piece_words, config.max_piece_chars
        )

    def score(self, question, document_ids, end_positions):
        """Mean logit per unit, for a document already tokenized and segmented."""
        question_ids = question_token_ids(self.tokenizer, question, self.model.config.question_suffix)
        return score_document(self.model, question_ids, list(document_ids), list(end_positions))

    def scan(self, question, document, top_k=10):
        """Segment `document`, score every unit against `question`, keep the best `top_k` in document order."""
        segmented = self.segment(document)
        scores = self.score(question, segmented.input_ids, segmented.end_positions)
        indices = top_k_indices(scores, top_k)
        return ScanResult(
            indices, [scores[i] for i in indices], join_context(segmented.units, indices), segmented.units, scores
        )


def random_scanner(size="mamba2-tiny", seed=0, **config_overrides):
    """A randomly initialised scanner of a named Mamba-2 size (`mamba2-tiny`, `mamba2-130m`, `mamba2-1.3b`, ...)."""
    if NAMED_SIZES.get(size, {}).get("backbone") != "mamba2":
        names = [name for name, fields in NAMED_SIZES.items() if fields["backbone"] == "mamba2"]
        raise ValueError(f"Unknown scanner size {size!r}; choose one of {', '.join(names)}.")
    fields = {k: v for k, v in NAMED_SIZES[size].items() if k != "backbone"}
    torch.manual_seed(seed)
    return MambaForSentenceScoring(MambaScannerConfig(**{**fields, **config_overrides})).eval()


def write_scanner_folder(model, out_dir, tokenizer=None, *, card=None, extra_files=None, force=False):
    """Write a scanner Hub folder (its own auto_map, the plain tokenizer, no sentence-transformers files)."""
    with staged_folder(out_dir, force) as staging:
        write_scanner_contents(
            model,
            tokenizer if tokenizer is not None else build_scanner_tokenizer(),
            staging,
            max_seq_length=UNBOUNDED_LENGTH,
            card=card,
            extra_files=extra_files,
        )
    return Path(out_dir).absolute()
