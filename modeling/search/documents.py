"""The documents a search index holds: a folder of text files (what git ignores skipped), a JSONL corpus, or a BEIR
folder."""

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mamba_retrieval.modeling.data_files import document_text, read_corpus

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text"}


@dataclass
class Document:
    id: str  # a file's path relative to the source folder, or a corpus _id
    text: str

    @property
    def sha256(self):
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass
class SourceReport:
    documents: list
    skipped: list  # (path, reason)


def read_source(source):
    """Documents of `source`: a folder of text/Markdown files (recursively), a JSONL corpus, or a BEIR folder."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist.")
    if source.is_file():
        return SourceReport(read_jsonl_corpus(source), [])
    if (source / "corpus.jsonl").is_file():
        return SourceReport(read_jsonl_corpus(source / "corpus.jsonl"), [])
    return read_text_folder(source)


def read_jsonl_corpus(path):
    """BEIR-style JSONL: one object per line with `_id` (or `id`), `text` and an optional `title`."""
    return [Document(doc_id, document_text(title, text)) for doc_id, title, text in read_corpus(path)]


def read_text_folder(folder):
    documents, skipped = [], []
    ignored = git_ignored(folder)
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue  # hidden files and folders (.git, an index kept inside the folder) are not documents
        if path.suffix.lower() not in TEXT_SUFFIXES or ignored(relative.as_posix()):
            continue  # what git ignores (build outputs and the like) is not the folder's text either
        try:
            data = path.read_bytes()
        except OSError as error:
            skipped.append((str(relative), f"unreadable: {error.strerror or error}"))
            continue
        if b"\0" in data:
            skipped.append((str(relative), "binary content"))
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            skipped.append((str(relative), "not UTF-8 text"))
            continue
        documents.append(Document(relative.as_posix(), text))
    if not documents:
        detail = f" ({len(skipped)} skipped: {skipped[0][0]}: {skipped[0][1]}, ...)" if skipped else ""
        raise ValueError(f"No text files ({', '.join(sorted(TEXT_SUFFIXES))}) in {folder}{detail}.")
    return SourceReport(documents, skipped)


# The folder being indexed is data, and so is its .git/config: git runs with every key that could start a program
# overridden (core.fsmonitor runs one on `ls-files`; hooks and a pager are off too). safe.directory still applies.
SAFE_GIT = ("git", "--no-pager", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null")


def git_ignored(folder):
    """What git ignores under `folder`, as a predicate on posix paths relative to it, when `folder` is in a git work
    tree and git is installed (otherwise nothing is ignored). A folder that is itself ignored is indexed whole: the
    user pointed at it."""
    try:
        result = subprocess.run(
            [*SAFE_GIT, "-C", str(folder), "ls-files", "-z", "--others", "--ignored", "--exclude-standard"]
            + ["--directory", "."],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return lambda path: False
    entries = {os.fsdecode(entry) for entry in result.stdout.split(b"\0") if entry}
    if result.returncode != 0 or "./" in entries:  # not a work tree (or git refused), or the folder itself ignored
        return lambda path: False
    folders = tuple(entry for entry in entries if entry.endswith("/"))  # --directory: a wholly ignored folder
    return lambda path: path in entries or path.startswith(folders)
