"""Link-based synthetic training data for SPScanner: the rules of the original's `train_data_generation/` scripts.

The steps (`synth_run.py` runs them, each writing JSONL):
1. Documents: English, and between `min_tokens` and `max_tokens` GPT-NeoX tokens; each split into SPScanner's sentence
   units (`segmentation.segment_document`).
2. Connections: a random chunk of 5 consecutive units and a box of up to 200 units around it (10 before and 190
   after, or 185 before and 15 after, whichever fits more of the document; a tie is broken at random). The LLM is
   shown the chunk and the box's other units as indexed lines, and names the units connected to the chunk, with a
   reason for each (`connection.txt`).
3. Question: the connected unit farthest from the chunk (range = distance to the chunk's far end, at least 10) and
   its reason; the LLM writes one short, concrete question from that connection (`question.txt`).
4. Needed sentences: the LLM is shown units chunk-2 .. chunk+2 and selected-3 .. selected+3 as an indexed list and
   picks those needed to answer the question (`needed_sentences.txt`). The example is kept only if it picks units
   on both sides.
5. Training examples: `input_ids` = tokens of `question.strip() + "\\n"` + the document's tokens, `sentence_indices`
   = each unit's end token, `sentence_labels` = 1 for the picked units; one example per source chunk (the one with
   the longest connection range).

Parsing follows the original's rules; a response that does not parse is skipped and counted under a reason, never an
error.
"""

import random
import re
from string import punctuation

from mamba_retrieval.modeling.prompts import load_prompt

CHUNK_SIZE = 5
MIN_CONNECTION_RANGE = 10
SKIP_WORDS = ("gutenberg", "copyright")  # licence boilerplate connections make useless questions (the original)

# The 50 most frequent English words; English prose has a third or more of its words among them.
ENGLISH_FUNCTION_WORDS = frozenset(
    "the of and to a in is it you that he was for on are with as i his they be at one have this from or had by "
    "not but what all were we when your can said there use an each which she do how their if will".split()
)

# The steps of a `synth` run, in order, and those that ask the LLM
STEPS = ("documents", "connections", "questions", "needed", "train")
LLM_STEPS = ("connections", "questions", "needed")


def english_share(text):
    """Share of the words of `text` that are among the 50 most frequent English words."""
    words = re.findall(r"[a-z']+", text[:200_000].lower())
    return sum(word in ENGLISH_FUNCTION_WORDS for word in words) / max(1, len(words))


def document_problem(text, n_tokens, min_tokens, max_tokens, min_english_share=0.2):
    """Why a document is left out (a short reason), or None when it is kept."""
    if n_tokens < min_tokens:
        return "too_short"
    if n_tokens > max_tokens:
        return "too_long"
    if english_share(text) < min_english_share:
        return "not_english"
    return None


def remove_special_characters(text):
    """The original's cleaning of a unit before it goes into a prompt: characters that are not letters, digits,
    whitespace or ASCII punctuation become spaces; whitespace runs become one space."""
    cleaned = "".join(ch if ch.isalnum() or ch.isspace() or ch in punctuation else " " for ch in text)
    cleaned = re.sub(r"[^\S ]+", " ", cleaned)
    return re.sub(r"[ ]+", " ", cleaned).strip()


def sample_chunk_and_box(n_units, rng):
    """(chunk_first, box_first, box_last), all inclusive unit indices; the chunk is 5 units from chunk_first."""
    if n_units < CHUNK_SIZE:
        raise ValueError(f"A document needs at least {CHUNK_SIZE} units for a chunk; it has {n_units}.")
    first = rng.choice(range(n_units - CHUNK_SIZE + 1))
    after = (max(0, first - 10), min(n_units, first + 190))  # the box mostly after the chunk
    before = (max(0, first - 185), min(n_units, first + 15))  # the box mostly before it
    size_after, size_before = after[1] - after[0], before[1] - before[0]
    box = after if size_after > size_before else before if size_before > size_after else rng.choice([after, before])
    return first, box[0], box[1] - 1


def sample_chunks(n_units, seed, count):
    """[(n, (chunk_first, box_first, box_last))] for draws n = 0 .. count-1 of one document, each draw seeded by
    `seed` and n alone (so a document's chunks do not depend on the others); a chunk drawn again is left out."""
    chunks, firsts = [], set()
    for n in range(count):
        chunk = sample_chunk_and_box(n_units, random.Random(f"{seed}:{n}"))
        if chunk[0] not in firsts:
            firsts.add(chunk[0])
            chunks.append((n, chunk))
    return chunks


def connection_prompt(units, chunk_first, box_first, box_last):
    """(prompt, box_line_units): the box's units other than the chunk as `Index i:` lines; box_line_units[i] is the
    document unit on line i."""
    chunk = range(chunk_first, chunk_first + CHUNK_SIZE)
    text = "".join(remove_special_characters(units[i]) + " " for i in chunk)
    line_units = [i for i in range(box_first, box_last + 1) if i not in chunk]
    box = "".join(f"Index {line}: {remove_special_characters(units[i])}\n" for line, i in enumerate(line_units))
    return load_prompt("connection").format(text=text, box=box), line_units


# GPT-4o bolds the index anywhere on a line (the original's patterns); other models often write the prompt's own
# plain `Index N: ...` at the start of a line, possibly as a list item. Either form is read.
_PLAIN_INDEX = r"^[ \t]*(?:[-*]|\d+\.)?[ \t]*Index"
CONNECT_INDEX = re.compile(rf"\*\*Index ([\d]+)[\*\*]*|{_PLAIN_INDEX} ([\d]+):", re.M)
CONNECT_SENTENCE = re.compile(rf"(?:\*\*Index [\d]+[\*\*]*|{_PLAIN_INDEX} [\d]+):[\*\*]* [\"]*(.*?)[\"]*\n", re.M)
CONNECT_REASON = re.compile(r"[- ]*[\*\*]*Reason[\*\*]*:[\*\*]* (.*?)\n")
CONNECT_REASON_BULLET = re.compile(r"- (.*?)\n")
REASONS_HEADING = "### Reasons for Connection:"


def _indices(text):
    return [bold or plain for bold, plain in CONNECT_INDEX.findall(text)]


def parse_connections(output, line_units):
    """{document unit: reason} from a connection answer, or (None, reason it was skipped). The answer must list each
    unit as `**Index N**: "sentence"` (GPT-4o's layout, which the original parses) or `Index N: "sentence"`, with a
    `Reason: ...` line."""
    output = output if output.endswith("\n") else output + "\n"  # the patterns end at a newline
    indices = _indices(output)
    sentences = CONNECT_SENTENCE.findall(output)
    reasons = CONNECT_REASON.findall(output) or CONNECT_REASON_BULLET.findall(output)
    if len(set(indices)) != len(indices) and REASONS_HEADING in output:
        # indices listed once, then again under a heading with their reasons
        index_part, reason_part = output.split(REASONS_HEADING)[:2]
        indices = _indices(index_part)
        sentences = CONNECT_SENTENCE.findall(index_part)
        reasons = CONNECT_SENTENCE.findall(reason_part) or CONNECT_REASON_BULLET.findall(output)
    if not indices:
        return None, "no_indices"
    if not len(indices) == len(sentences) == len(reasons):
        return None, "indices_sentences_reasons_differ"
    lines = [int(index) for index in indices]
    if any(line >= len(line_units) for line in lines):
        return None, "index_out_of_box"
    return {line_units[line]: reason for line, reason in zip(lines, reasons)}, None


def connection_range(unit, chunk_first):
    """Distance from `unit` to the far end of the chunk (the original's question step)."""
    return max(abs(unit - chunk_first), abs(unit - (chunk_first + CHUNK_SIZE - 1)))


def farthest_connections(connections, chunk_first, min_range=MIN_CONNECTION_RANGE):
    """[(unit, range)] of the connected units at the largest range, if that range is >= `min_range` (ties kept)."""
    ranges = {unit: connection_range(unit, chunk_first) for unit in connections}
    if not ranges or max(ranges.values()) < min_range:
        return []
    best = max(ranges.values())
    return [
        (unit, best)
        for unit, value in sorted(ranges.items())
        if value == best and not any(word in connections[unit].lower() for word in SKIP_WORDS)
    ]


def question_prompt(connection):
    return load_prompt("question").format(connection=connection)


def parse_question(output):
    """The question after the last `QUESTION:` (which must be in the last two lines), or (None, reason)."""
    if "QUESTION:" not in output:
        return None, "no_question_keyword"
    output = output.rstrip()  # trailing blank lines do not move the question off the end
    if "QUESTION:" not in "\n".join(output.split("\n")[-2:]):
        return None, "question_not_at_end"
    question = output.split("QUESTION:")[-1].strip().strip("*").strip()
    return (question, None) if question else (None, "empty_question")


def needed_sentence_parts(n_units, chunk_first, selected):
    """(chunk part, selected part): units chunk-2 .. chunk+2 and selected-3 .. selected+3, within the document."""
    chunk_part = list(range(max(chunk_first - 2, 0), min(chunk_first + CHUNK_SIZE + 2, n_units)))
    selected_part = list(range(max(0, selected - 3), min(n_units, selected + 4)))
    if set(chunk_part) & set(selected_part):
        raise ValueError(f"Unit {selected} is too close to the chunk at {chunk_first} (range below 10?).")
    return chunk_part, selected_part


def needed_sentences_prompt(units, question, chunk_part, selected_part):
    """(prompt, listed units): both parts in document order as `Index i:` lines."""
    listed = sorted(chunk_part + selected_part)
    elements = "".join(f"Index {i}: {remove_special_characters(units[unit])}\n" for i, unit in enumerate(listed))
    return load_prompt("needed_sentences").format(question=question, list_of_text_elements=elements), listed


LIST_AFTER_KEYWORD = re.compile(r"^\s*\[([\d\s,]*)\]")


def parse_needed_sentences(output, listed):
    """The document units picked in a needed-sentences answer (the list after the last `LIST:`), or (None, reason)."""
    if "LIST:" not in output:
        return None, "no_list_keyword"
    tail = output.split("**LIST:**")[-1] if "**LIST:**" in output else output.split("LIST:")[-1]
    match = LIST_AFTER_KEYWORD.match(tail.strip().strip("*"))
    if not match:
        return None, "list_not_integers"
    picked = [int(x) for x in match.group(1).replace(",", " ").split()]
    if not picked:
        return None, "empty_list"
    if max(picked) >= len(listed):
        return None, "index_out_of_list"
    return sorted({listed[i] for i in picked}), None


def training_example(question_ids, document_ids, end_positions, positive_units):
    """The scanner's training format for one question over one document."""
    positives = set(positive_units)
    return {
        "input_ids": list(question_ids) + list(document_ids),
        "sentence_indices": [end + len(question_ids) for end in end_positions],
        "sentence_labels": [int(i in positives) for i in range(len(end_positions))],
    }


def one_per_source_chunk(candidates, seed):
    """Keep, for each `chunk_key`, the candidate with the longest `connection_range` (ties: a seeded random one)."""
    shuffled = list(candidates)
    random.Random(seed).shuffle(shuffled)
    best = {}
    for candidate in shuffled:
        kept = best.get(candidate["chunk_key"])
        if kept is None or candidate["connection_range"] > kept["connection_range"]:
            best[candidate["chunk_key"]] = candidate
    return sorted(best.values(), key=lambda c: c["chunk_key"])
