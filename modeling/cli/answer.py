"""`mamba-retrieval answer TESTSET OUT`: end-to-end QA as in SPScanner's paper (eval/answer_judge.py)."""

import json
import sys
from pathlib import Path

from mamba_retrieval.eval.qa_metrics import MULTIPLE_CHOICE, SYSTEMS
from mamba_retrieval.modeling.cli.arguments import count_or_fraction
from mamba_retrieval.modeling.cli.llm_options import add_llm_arguments, client_from_args
from mamba_retrieval.modeling.data_files import write_text_atomic
from mamba_retrieval.modeling.file_hashes import file_sha256
from mamba_retrieval.modeling.pretrained import locate_model


def register(subparsers):
    parser = subparsers.add_parser(
        "answer",
        help="answer a test set's questions with an LLM from retrieved sentences; judged accuracy and F1",
        description="For each question of TESTSET (SPScanner's published format), let an LLM answer from the "
        "sentences each system picks (SPScanner, BM25, random, full context), then score the answers: "
        "token F1 against the references and a YES/NO LLM judge. Prints per-benchmark and mean tables; "
        "writes OUT/answers.jsonl and OUT/results.json. LLM answers are cached in OUT/llm_cache.",
    )
    parser.add_argument("testset", help="test set (.json, or .pickle / .pkl as published)")
    parser.add_argument("out", help="output folder")
    scanner = parser.add_mutually_exclusive_group()
    scanner.add_argument("--scanner", help="SPScanner Hub folder: score every datapoint here")
    scanner.add_argument("--logits", help="logits file written by `mamba-retrieval score-testset`")
    parser.add_argument(
        "--systems",
        nargs="+",
        choices=SYSTEMS,
        help="systems to compare (default: all; scanner only with --scanner / --logits)",
    )
    parser.add_argument(
        "--top-k",
        type=count_or_fraction,
        default=10,
        help="units given to the LLM: a count, or a fraction < 1 meaning max(10, ceil(n * k))",
    )
    parser.add_argument(
        "--full-context-tokens",
        type=int,
        default=120_000,
        help="token budget of the full-context baseline (GPT-NeoX tokens of the document)",
    )
    parser.add_argument("--judge-model", help="model of the judge (default: the answering model)")
    parser.add_argument("--judge-price-input", type=float, help="with --judge-model: its USD per million prompt tokens")
    parser.add_argument(
        "--judge-price-output", type=float, help="with --judge-model: its USD per million completion tokens"
    )
    parser.add_argument(
        "--multiple-choice",
        nargs="*",
        default=list(MULTIPLE_CHOICE),
        help="benchmarks without F1 (default: the original's multiple-choice sets)",
    )
    parser.add_argument("--limit", type=int, help="only the first N datapoints of each benchmark")
    parser.add_argument("--seed", type=int, default=7906, help="seed of the random baseline (the original's)")
    add_llm_arguments(parser)
    parser.set_defaults(func=run)


def run(args):
    from mamba_retrieval.eval.answer_judge import AnswerRun, markdown_tables, read_logits
    from mamba_retrieval.eval.spscanner_testset import read_testset, score_testset
    from mamba_retrieval.modeling.scanner.llm_client import LLMError
    from mamba_retrieval.modeling.scanner.sentence_scanner import SentenceScanner

    out = Path(args.out)
    data = read_testset(args.testset)  # before OUT is made: a refused test set leaves nothing behind
    out.mkdir(parents=True, exist_ok=True)
    if args.limit:
        data = {b: dict(list(points.items())[: args.limit]) for b, points in data.items()}
    has_scanner = bool(args.scanner or args.logits)
    systems = args.systems or [s for s in SYSTEMS if s != "scanner" or has_scanner]
    logits = None
    if "scanner" in systems:
        if args.logits:
            logits = read_logits(args.logits)
        elif args.scanner:
            scores = score_testset(SentenceScanner.from_pretrained(locate_model(args.scanner, "--scanner")), data)
            logits = {b: {str(k): v for k, v in points.items()} for b, points in scores.items()}
    top_k = int(args.top_k) if args.top_k >= 1 else args.top_k
    answer_client = client_from_args(args, out / "llm_cache")
    judge_client = (
        answer_client.with_model(args.judge_model, args.judge_price_input, args.judge_price_output)
        if args.judge_model
        else answer_client
    )
    try:
        records, table = AnswerRun(
            data,
            answer_client,
            judge_client,
            systems,
            top_k,
            args.full_context_tokens,
            args.seed,
            logits,
            args.multiple_choice,
        ).run()
    except LLMError as error:
        print(f"mamba-retrieval answer: error: {error}", file=sys.stderr)
        return 1
    with open(out / "answers.jsonl", "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    usage = {"answers": answer_client.usage()}
    if judge_client is not answer_client:
        usage["judge"] = judge_client.usage()
    result = {
        "testset": str(args.testset),
        "testset_sha256": file_sha256(args.testset),
        "systems": systems,
        "top_k": top_k,
        "full_context_tokens": args.full_context_tokens,
        "seed": args.seed,
        "answer_model": answer_client.model,
        "judge_model": judge_client.model,
        "table": table,
        "llm": usage,
    }
    write_text_atomic(out / "results.json", json.dumps(result, indent=2) + "\n")
    print(markdown_tables(table))
    print("LLM: " + "; ".join(f"{who}: " + ", ".join(f"{k} {v}" for k, v in u.items()) for who, u in usage.items()))
    print(f"wrote {out / 'answers.jsonl'} and {out / 'results.json'}")
