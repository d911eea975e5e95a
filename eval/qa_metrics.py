"""Scoring of generated answers as SPScanner's RAG pipeline scores them.

- Token F1, SQuAD-style (the SQuAD v1.1 script, and LongBench's `qa_f1_score`, which the original imports from a
  `metrics` module it does not ship): lower-case, drop ASCII punctuation, drop the articles a/an/the, split on
  whitespace; F1 of the multiset overlap; 0 when nothing overlaps (so also when either side is empty). With several
  reference answers the best F1 counts.
- The answer is the text after the last `ANSWER:` up to the end of that line; an output without `ANSWER` counts as a
  whole (first 2,000 characters), as the original's `qa_parsing` does.
- The judge's decision is the first word after the last `DECISION:` (`**`, `::` and `Decision: ` tolerated, as the
  original's `judge_ans_parse`); anything but yes/no is malformed.
"""

import re
import string
from collections import Counter

PUNCTUATION = set(string.punctuation)

# The sentence pickers `answer` compares (named here, beside the scoring, so `answer --help` needs no model code)
SYSTEMS = ("scanner", "bm25", "random", "full-context")
# The original's multiple-choice benchmarks (rag_pipeline/evaluation.py): no F1 for them.
MULTIPLE_CHOICE = (
    "longbook_choice_eng",
    "meetingqa_4k",
    "meetingqa_16k",
    "paperqa_4k",
    "paperqa_16k",
    "tpo",
    "quality",
    "coursera",
    "muld_CAC",
)


def normalize_answer(text):
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction, reference):
    prediction_tokens = normalize_answer(prediction).split()
    reference_tokens = normalize_answer(reference).split()
    same = sum((Counter(prediction_tokens) & Counter(reference_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction_tokens), same / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


def best_f1(prediction, references):
    if not references:
        raise ValueError("No reference answers to score against.")
    return max(token_f1(prediction, reference) for reference in references)


def parse_answer(output):
    output = output.replace("**ANSWER**", "ANSWER")
    if "ANSWER:" not in output:
        return output[:2000]
    return output.split("ANSWER:")[-1].strip().split("\n")[0].strip()


def parse_judge_decision(output):
    """ "yes" or "no"; ValueError when the output holds no YES/NO decision."""
    output = output.replace("**", "").replace("::", ":").replace("Decision: ", "DECISION:")
    if "DECISION:" not in output:
        raise ValueError("no DECISION: keyword")
    after = output.split("DECISION:")[-1].strip()  # the decision may be on the keyword's line or the next
    decision = after.split()[0].lower().rstrip(".,") if after else ""
    if decision not in ("yes", "no"):
        raise ValueError(f"decision {decision!r} is neither yes nor no")
    return decision
