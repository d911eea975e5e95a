"""A QMSum question-answering test set in the format of SPScanner's published test sets, for `mamba-retrieval answer`.

Each QMSum query of a split (../shared/data/distill-corpus/qmsum_query_span_pairs.jsonl.gz, with its reference answer)
becomes a datapoint over its whole meeting transcript (../shared/data/qmsum-longdoc): `{"qmsum": {query_id:
{input_ids, full_text_sentences, question, answer: [reference], answer_type: "paragraph", sentence_indices}}}`, with
the meeting split into SPScanner's sentence units and `input_ids` = tokens of `question + "\\n"` + the transcript's.

    python eval/studies/qmsum_qa_testset.py qmsum_test.json --split test
"""

import argparse
import json
from pathlib import Path

from qmsum_sentence_recall import DEFAULT_DATA, load_pairs

from mamba_retrieval.modeling.scanner.segmentation import segment_document
from mamba_retrieval.modeling.scanner.sentence_scanner import build_scanner_tokenizer, question_token_ids


def build_testset(pairs, corpus, tokenizer=None):
    tokenizer = tokenizer or build_scanner_tokenizer()
    segmented, points = {}, {}
    for pair in pairs:
        meeting = pair["meeting_id"]
        if meeting not in segmented:
            segmented[meeting] = segment_document(corpus[meeting], tokenizer)
        document = segmented[meeting]
        question_ids = question_token_ids(tokenizer, pair["query"])
        points[pair["query_id"]] = {
            "input_ids": question_ids + document.input_ids,
            "full_text_sentences": document.units,
            "question": pair["query"],
            "answer": [pair["answer"]],
            "answer_type": "paragraph",  # QMSum's references are summaries of a few sentences
            "sentence_indices": [end + len(question_ids) for end in document.end_positions],
        }
    return {"qmsum": points}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="test-set JSON to write")
    parser.add_argument(
        "--data-dir",
        default=str(DEFAULT_DATA),
        help="the offline data folder (default: $MAMBA_RETRIEVAL_DATA, else ../shared/data)",
    )
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--meetings", nargs="+", help="only queries on these meetings")
    parser.add_argument("--limit", type=int, help="only the first N queries")
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    args = parser.parse_args(argv)
    if Path(args.output).exists() and not args.force:
        raise SystemExit(f"{args.output} exists; choose another path or pass --force.")
    pairs, corpus = load_pairs(args.data_dir, args.split)
    if args.meetings:
        pairs = [pair for pair in pairs if pair["meeting_id"] in set(args.meetings)]
    pairs = pairs[: args.limit] if args.limit else pairs
    if not pairs:
        raise SystemExit("No queries selected; check --split and --meetings.")
    testset = build_testset(pairs, corpus)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(testset))
    print(
        f"wrote {args.output}: {len(testset['qmsum'])} QMSum {args.split} queries over "
        f"{len({p['meeting_id'] for p in pairs})} meetings"
    )


if __name__ == "__main__":
    main()
