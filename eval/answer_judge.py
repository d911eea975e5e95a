"""`mamba-retrieval answer TESTSET OUT`: end-to-end QA as in SPScanner's paper. An LLM answers each question from
the sentences a system picks, and is scored by token F1 against the references and by a YES/NO LLM judge.

Systems, all in the same run on the same test set (published format, see `spscanner_testset.read_testset`):
- `scanner`: the top-k units by SPScanner logits (`--scanner MODEL` scores them here; `--logits FILE` reads the file
  `mamba-retrieval score-testset` wrote);
- `bm25`: the top-k units by BM25 (bm25s) against the question;
- `random`: k units drawn at random (seeded per datapoint);
- `full-context`: the document from its start, as many units as fit in `--full-context-tokens` tokens.
Selected units are joined in document order as the original joins them (adjacent directly, gaps with a newline).
The answer prompt asks for a short one-sentence or one-paragraph answer (the datapoint's `answer_type`).

Scores per benchmark: accuracy = share of datapoints the judge calls correct against at least one reference;
F1 = mean of the best token F1 over the references (not for multiple-choice benchmarks, as in the original). The mean
row averages the benchmarks (F1 over the benchmarks that have it). Datapoints whose answer was malformed, or with a
malformed judgement and no YES (the malformed one might have been the YES), are skipped and counted. Outputs:
OUT/answers.jsonl (every answer and judgement) and OUT/results.json.
"""

import random
import sys
from collections import Counter

from mamba_retrieval.eval.bm25_units import BM25Units
from mamba_retrieval.eval.qa_metrics import MULTIPLE_CHOICE, SYSTEMS, best_f1, parse_answer, parse_judge_decision
from mamba_retrieval.eval.spscanner_testset import question_prefix_length, read_published
from mamba_retrieval.modeling.prompts import load_prompt
from mamba_retrieval.modeling.scanner.llm_client import LLMError
from mamba_retrieval.modeling.scanner.sentence_scanner import (
    build_scanner_tokenizer,
    join_context,
    top_k_count,
    top_k_indices,
)


def references(point):
    answer = point["answer"]
    answers = [answer] if isinstance(answer, str) else [str(a) for a in answer]
    if not answers:
        raise ValueError(f"Datapoint {point['question']!r} has no reference answer.")
    return answers


def condition(point):
    kind = point.get("answer_type", "sentence")
    if kind not in ("sentence", "paragraph"):
        raise ValueError(f"answer_type must be 'sentence' or 'paragraph', got {kind!r}.")
    return "short one-sentence" if kind == "sentence" else "short one-paragraph"


def full_context_units(point, budget, question_prefix):
    """How many units, from the first, fit in `budget` document tokens (at least one)."""
    ends = point["sentence_indices"]
    fitting = sum(1 for end in ends if end - question_prefix + 1 <= budget)
    return max(1, fitting)


def select_units(system, point, top_k, seed, key, logits=None, budget=None, question_prefix=0):
    units = point["full_text_sentences"]
    if system == "scanner":
        if len(logits) != len(units):
            raise ValueError(f"{key}: {len(logits)} logits for {len(units)} sentences.")
        return top_k_indices(logits, top_k)
    if system == "bm25":
        return top_k_indices(BM25Units(units).score(point["question"]), top_k)
    if system == "random":
        rng = random.Random(f"{seed}:{key}")  # independent of the order datapoints are read in
        return sorted(rng.sample(range(len(units)), top_k_count(len(units), top_k)))
    if system == "full-context":
        return list(range(full_context_units(point, budget, question_prefix)))
    raise ValueError(f"Unknown system {system!r}; choose from {', '.join(SYSTEMS)}.")


def answer_prompt(system, point, indices):
    units = point["full_text_sentences"]
    if system == "full-context":
        return load_prompt("answer_from_full_context").format(
            question=point["question"], context="".join(units[i] for i in indices), condition=condition(point)
        )
    return load_prompt("answer_from_sentences").format(
        question=point["question"], context=join_context(units, indices), condition=condition(point)
    )


def judge_prompt(question, reference, answer):
    return load_prompt("judge").format(question=question, reference=reference, answer=answer)


class AnswerRun:
    """Answers, judgements and scores of several systems over one test set."""

    def __init__(
        self,
        data,
        answer_client,
        judge_client,
        systems,
        top_k=10,
        full_context_tokens=120_000,
        seed=7906,
        logits=None,
        multiple_choice=MULTIPLE_CHOICE,
        log=None,
    ):
        self.data, self.answer_client, self.judge_client = data, answer_client, judge_client
        self.systems, self.top_k, self.budget, self.seed = list(systems), top_k, full_context_tokens, seed
        self.logits, self.multiple_choice, self.log = logits or {}, set(multiple_choice), log or sys.stderr
        if "scanner" in self.systems and not self.logits:
            raise ValueError("The scanner system needs logits: give --scanner MODEL or --logits FILE.")
        for benchmark, points in data.items():
            for key, point in points.items():
                missing = [f for f in ("full_text_sentences", "answer", "question") if f not in point]
                if missing:
                    raise ValueError(
                        f"Datapoint {benchmark}/{key} lacks {missing}; answering needs the published "
                        "format's full_text_sentences, question and answer."
                    )

    def run(self):

        tokenizer = build_scanner_tokenizer()
        records, record_points = [], []
        for benchmark, points in self.data.items():
            for key, point in points.items():
                prefix = question_prefix_length(tokenizer, point) if "full-context" in self.systems else 0
                for system in self.systems:
                    logits = self.logits.get(benchmark, {}).get(str(key)) if system == "scanner" else None
                    if system == "scanner" and logits is None:
                        raise ValueError(f"No scanner logits for {benchmark}/{key} in the logits file.")
                    indices = select_units(
                        system, point, self.top_k, self.seed, f"{benchmark}:{key}", logits, self.budget, prefix
                    )
                    records.append(
                        {
                            "system": system,
                            "benchmark": benchmark,
                            "key": str(key),
                            "n_units": len(indices),
                            "prompt": answer_prompt(system, point, indices),
                        }
                    )
                    record_points.append(point)
        print(f"answering {len(records)} questions ({len(self.systems)} systems)", file=self.log, flush=True)
        answers = _completions(self.answer_client, [r.pop("prompt") for r in records], "answers")
        judge_jobs = []
        for record, point, completion in zip(records, record_points, answers):
            if not completion.ok:
                record["skipped"] = "answer_malformed"
                continue
            record["raw_answer"], record["answer"] = completion.text, parse_answer(completion.text)
            refs = references(point)
            if record["benchmark"] not in self.multiple_choice:
                record["f1"] = best_f1(record["answer"], refs)
            judge_jobs += [(record, judge_prompt(point["question"], ref, record["answer"])) for ref in refs]
        print(f"judging {len(judge_jobs)} answers", file=self.log, flush=True)
        judgements = _completions(self.judge_client, [prompt for _, prompt in judge_jobs], "judgements")
        for (record, _), completion in zip(judge_jobs, judgements):
            try:
                decision = parse_judge_decision(completion.text) if completion.ok else None
            except ValueError:
                decision = None
            record.setdefault("judgements", []).append(decision)
        for record in records:
            decisions = record.get("judgements", [])
            if "skipped" in record:
                continue
            if "yes" in decisions:
                record["correct"] = True
            elif None in decisions:
                record["skipped"] = "judge_malformed"
                record.pop("f1", None)
            else:
                record["correct"] = False
        return records, score(records, self.data, self.systems, self.multiple_choice)


def _completions(client, prompts, step):

    completions = client.complete_many(prompts)
    failed = [c for c in completions if not c.ok and not c.malformed]
    if failed:
        raise LLMError(
            f"{len(failed)} of {len(prompts)} {step} requests failed (first: {failed[0].error}); rerun "
            "the same command to retry them (answers so far are cached)."
        )
    return completions


def score(records, data, systems, multiple_choice):
    """{system: {benchmark: {accuracy, f1, correct, n, skipped}, "mean": {...}}}."""
    table = {}
    for system in systems:
        rows = {}
        for benchmark in data:
            mine = [r for r in records if r["system"] == system and r["benchmark"] == benchmark]
            scored = [r for r in mine if "skipped" not in r]
            correct = sum(r["correct"] for r in scored)
            f1 = None if benchmark in multiple_choice or not scored else sum(r["f1"] for r in scored) / len(scored)
            rows[benchmark] = {
                "accuracy": correct / len(scored) if scored else None,
                "f1": f1,
                "correct": correct,
                "n": len(scored),
                "skipped": dict(Counter(r["skipped"] for r in mine if "skipped" in r)),
            }
        accuracies = [row["accuracy"] for row in rows.values() if row["accuracy"] is not None]
        f1s = [row["f1"] for row in rows.values() if row["f1"] is not None]
        rows["mean"] = {
            "accuracy": _mean(accuracies),
            "f1": _mean(f1s),
            "correct": sum(row["correct"] for row in rows.values()),
            "n": sum(row["n"] for row in rows.values()),
            "skipped": sum(sum(row["skipped"].values()) for row in rows.values()),
        }
        table[system] = rows
    return table


def _mean(values):
    return sum(values) / len(values) if values else None


def markdown_tables(table):
    systems = list(table)
    benchmarks = list(next(iter(table.values())))
    header = "| benchmark | " + " | ".join(systems) + " |\n|---|" + "---|" * len(systems) + "\n"
    out = []
    for metric in ("accuracy", "f1"):
        lines = [f"| {b} | " + " | ".join(_cell(table[s][b][metric]) for s in systems) + " |" for b in benchmarks]
        out.append(f"{'Judged accuracy' if metric == 'accuracy' else 'Token F1'}\n\n" + header + "\n".join(lines))
    counts = ", ".join(
        f"{s}: {table[s]['mean']['correct']}/{table[s]['mean']['n']} correct, {table[s]['mean']['skipped']} skipped"
        for s in systems
    )
    return "\n\n".join(out) + f"\n\n{counts}"


def _cell(value):
    return "-" if value is None else f"{value:.3f}"


def read_logits(path):
    """`{benchmark: {key: [logit per sentence]}}` as `score-testset` writes it (JSON or pickle); keys as str."""
    logits = read_published(path, "Logits file")
    return {benchmark: {str(k): list(v) for k, v in points.items()} for benchmark, points in logits.items()}
