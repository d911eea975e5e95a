"""`mamba-retrieval synth CORPUS OUT`: link-based SPScanner training data from your documents, with any
OpenAI-compatible LLM (rules in `synthetic_data.py`).

Each step writes one JSONL file in OUT and is skipped when that file exists, so a stopped run resumes: documents.jsonl
-> connections.jsonl -> questions.jsonl -> needed.jsonl -> train.jsonl (the `train-scanner` format). LLM answers are
cached in OUT/llm_cache, so an interrupted step costs nothing for the requests it had finished. OUT/synth.json
records the settings; a rerun with other settings is refused (use another OUT). OUT/stats.json counts what each
step kept and skipped (by reason) and the LLM's requests, tokens and cost.
"""

import json
import sys
from collections import Counter
from pathlib import Path

from mamba_retrieval.modeling import data_files
from mamba_retrieval.modeling.data_files import read_jsonl, read_qrels, write_jsonl, write_text_atomic
from mamba_retrieval.modeling.scanner import synthetic_data as sd
from mamba_retrieval.modeling.scanner.llm_client import LLMError
from mamba_retrieval.modeling.scanner.segmentation import segment_document
from mamba_retrieval.modeling.scanner.sentence_scanner import build_scanner_tokenizer, question_token_ids
from mamba_retrieval.modeling.scanner.synthetic_data import LLM_STEPS, STEPS


def read_corpus(path, qrels=None, limit=None):
    """[(doc_id, text)] from a JSONL corpus (BEIR `corpus.jsonl`: `_id`, `title`, `text`; or `id` + `text`), or a
    BEIR folder holding one; `qrels`: only the documents judged in that qrels TSV (a split)."""
    keep = {doc_id for judged in read_qrels(qrels).values() for doc_id in judged} if qrels else None
    documents = [
        (doc_id, f"{title}\n{text}" if title else text)
        for doc_id, title, text in data_files.read_corpus(path)
        if keep is None or doc_id in keep
    ]
    return documents[:limit] if limit else documents


class SynthRun:
    """The steps over one OUT folder; `run(until)` does the missing ones in order."""

    def __init__(self, out_dir, settings, client=None, documents=None, tokenizer=None, log=None):

        self.out = Path(out_dir)
        self.settings, self.client, self.documents = settings, client, documents
        self.log = log or sys.stderr
        self.tokenizer = tokenizer or build_scanner_tokenizer()
        self.stats = {}
        self.out.mkdir(parents=True, exist_ok=True)
        manifest = self.out / "synth.json"
        if manifest.exists():
            recorded = json.loads(manifest.read_text())
            if recorded != settings:
                changed = sorted(k for k in set(recorded) | set(settings) if recorded.get(k) != settings.get(k))
                raise ValueError(
                    f"{self.out} was made with other settings ({', '.join(changed)} differ); use "
                    f"another output folder, or remove it to start over."
                )
        else:
            write_text_atomic(manifest, json.dumps(settings, indent=2) + "\n")
        stats_path = self.out / "stats.json"
        if stats_path.exists():
            self.stats = json.loads(stats_path.read_text())

    def run(self, until="train"):
        results = None
        for step in STEPS[: STEPS.index(until) + 1]:
            path = self.out / f"{step}.jsonl"
            if path.exists():
                print(f"[{step}] done before: {path}", file=self.log)
                results = read_jsonl(path)
            else:
                if step in LLM_STEPS and self.client is None:
                    raise ValueError(f"Step {step} needs an LLM: give --llm-model (or set OPENAI_MODEL).")
                results, skipped = getattr(self, f"step_{step}")()
                write_jsonl(path, results)
                skipped = {reason: n for reason, n in sorted(skipped.items()) if n}
                self.stats[step] = {"kept": len(results), "skipped": skipped}
                if step in LLM_STEPS:  # steps resumed on another day may have used another model: say which
                    self.stats[step]["llm_model"] = self.client.model
                if self.client is not None:
                    self.stats["llm_this_run"] = self.client.usage()
                write_text_atomic(self.out / "stats.json", json.dumps(self.stats, indent=2) + "\n")
                print(
                    f"[{step}] kept {len(results)}, skipped {sum(skipped.values())}"
                    f"{' ' + str(skipped) if skipped else ''} -> {path}",
                    file=self.log,
                )
        return results

    def _llm(self, prompts, step):
        """Completions of all prompts of a step. Requests that failed (endpoint errors after the retries) stop the
        step before it writes anything: a rerun sends only those again, the others come from the cache."""

        completions = self.client.complete_many(
            prompts,
            progress=lambda done, total: (
                done % 50 == 0 and print(f"[{step}] {done}/{total}", file=self.log, flush=True)
            ),
        )
        failed = [c for c in completions if not c.ok and not c.malformed]
        if failed:
            raise LLMError(
                f"{len(failed)} of {len(prompts)} requests of step {step} failed (first: "
                f"{failed[0].error}); rerun the same command to retry them (answers so far are cached)."
            )
        return completions

    def _documents(self):
        return {row["doc_id"]: row for row in read_jsonl(self.out / "documents.jsonl")}

    def step_documents(self):

        s, kept, skipped = self.settings, [], Counter()
        if self.documents is None:
            raise ValueError("The documents step needs the corpus.")
        for doc_id, text in self.documents:
            n_tokens = len(self.tokenizer(text[: (s["max_tokens"] + 1) * 20], add_special_tokens=False)["input_ids"])
            problem = sd.document_problem(text, n_tokens, s["min_tokens"], s["max_tokens"], s["min_english_share"])
            if problem is None:
                try:
                    segmented = segment_document(text, self.tokenizer)
                except ValueError:
                    problem = "no_sentence_units"
            if problem is None and len(segmented.units) < sd.CHUNK_SIZE + s["min_range"]:
                problem = "too_few_units"
            if problem:
                skipped[problem] += 1
                continue
            kept.append(
                {
                    "doc_id": doc_id,
                    "units": segmented.units,
                    "input_ids": segmented.input_ids,
                    "end_positions": segmented.end_positions,
                }
            )
        return kept, skipped

    def step_connections(self):
        documents, s = self._documents(), self.settings
        jobs, skipped = [], Counter()
        for doc_id, doc in documents.items():
            chunks = sd.sample_chunks(len(doc["units"]), f"{s['seed']}:{doc_id}", s["chunks_per_document"])
            skipped["same_chunk_drawn_again"] += s["chunks_per_document"] - len(chunks)
            for n, (chunk_first, box_first, box_last) in chunks:
                prompt, line_units = sd.connection_prompt(doc["units"], chunk_first, box_first, box_last)
                jobs.append(
                    (
                        {
                            "chunk_key": f"{doc_id}#{n}",
                            "doc_id": doc_id,
                            "chunk_first": chunk_first,
                            "box": [box_first, box_last],
                        },
                        prompt,
                        line_units,
                    )
                )
        kept = []
        for (record, _, line_units), completion in zip(jobs, self._llm([j[1] for j in jobs], "connections")):
            connections, problem = self._parsed(
                completion, lambda text, units=line_units: sd.parse_connections(text, units)
            )
            if problem:
                skipped[problem] += 1
                continue
            kept.append({**record, "connections": {str(k): v for k, v in connections.items()}})
        return kept, skipped

    @staticmethod
    def _parsed(completion, parse):
        return parse(completion.text) if completion.ok else (None, "malformed_response")

    def step_questions(self):
        jobs, skipped = [], Counter()
        for record in read_jsonl(self.out / "connections.jsonl"):
            connections = {int(k): v for k, v in record["connections"].items()}
            selected = sd.farthest_connections(connections, record["chunk_first"], self.settings["min_range"])
            if not selected:
                skipped["connection_range_too_short"] += 1
            for unit, unit_range in selected:
                jobs.append(
                    (
                        {
                            "chunk_key": record["chunk_key"],
                            "doc_id": record["doc_id"],
                            "chunk_first": record["chunk_first"],
                            "selected": unit,
                            "connection_range": unit_range,
                            "connection": connections[unit],
                        },
                        sd.question_prompt(connections[unit]),
                    )
                )
        kept = []
        for (record, _), completion in zip(jobs, self._llm([j[1] for j in jobs], "questions")):
            question, problem = self._parsed(completion, sd.parse_question)
            if problem:
                skipped[problem] += 1
                continue
            kept.append({**record, "question": question})
        return kept, skipped

    def step_needed(self):
        documents, jobs = self._documents(), []
        for record in read_jsonl(self.out / "questions.jsonl"):
            units = documents[record["doc_id"]]["units"]
            chunk_part, selected_part = sd.needed_sentence_parts(len(units), record["chunk_first"], record["selected"])
            prompt, listed = sd.needed_sentences_prompt(units, record["question"], chunk_part, selected_part)
            jobs.append((record, prompt, listed, set(chunk_part)))
        kept, skipped = [], Counter()
        for (record, _, listed, chunk_part), completion in zip(jobs, self._llm([j[1] for j in jobs], "needed")):
            needed, problem = self._parsed(
                completion, lambda text, listed=listed: sd.parse_needed_sentences(text, listed)
            )
            if problem is None and not (set(needed) & chunk_part and set(needed) - chunk_part):
                problem = "needed_not_on_both_sides"
            if problem:
                skipped[problem] += 1
                continue
            kept.append({**record, "needed_units": needed})
        return kept, skipped

    def step_train(self):

        documents = self._documents()
        candidates = read_jsonl(self.out / "needed.jsonl")
        chosen = sd.one_per_source_chunk(candidates, self.settings["seed"])
        examples = []
        for record in chosen:
            doc = documents[record["doc_id"]]
            example = sd.training_example(
                question_token_ids(self.tokenizer, record["question"]),
                doc["input_ids"],
                doc["end_positions"],
                record["needed_units"],
            )
            examples.append(
                {
                    **example,
                    **{
                        k: record[k]
                        for k in (
                            "doc_id",
                            "chunk_key",
                            "chunk_first",
                            "selected",
                            "connection_range",
                            "question",
                            "needed_units",
                        )
                    },
                }
            )
        return examples, Counter({"another_example_of_the_same_chunk": len(candidates) - len(chosen)})
