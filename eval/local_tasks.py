"""A local BEIR-layout folder as an mteb retrieval task, read from disk with no hub access.

Layout (BEIR's): `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl` (`_id`, `text`) and `qrels/<split>.tsv`
(header `query-id corpus-id score`). mteb scores the task with its own evaluator (pytrec_eval), exactly as it
scores its registered tasks; only the loading is local.
"""

import logging
from pathlib import Path

from datasets import Dataset
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.task_metadata import TaskMetadata

from mamba_retrieval.modeling.data_files import BEIR_FILES, read_corpus, read_qrels, read_queries
from mamba_retrieval.modeling.file_hashes import files_hash
from mamba_retrieval.modeling.safe_paths import path_component

logger = logging.getLogger(__name__)


def check_beir_folder(folder, splits=None):
    """Raise a clear error unless `folder` is a BEIR-layout folder with qrels for every split in `splits`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"BEIR folder {folder} does not exist; pass a folder holding corpus.jsonl, "
            "queries.jsonl and qrels/<split>.tsv."
        )
    missing = [name for name in BEIR_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"BEIR folder {folder} has no {', '.join(missing)}; a BEIR folder holds "
            "corpus.jsonl, queries.jsonl and qrels/<split>.tsv."
        )
    available = sorted(path.stem for path in (folder / "qrels").glob("*.tsv"))
    if not available:
        raise FileNotFoundError(
            f"BEIR folder {folder} has no qrels/<split>.tsv files; relevance judgements are needed to score retrieval."
        )
    for split in splits or ():
        if split not in available:
            raise FileNotFoundError(
                f"BEIR folder {folder} has no qrels/{split}.tsv; its splits are "
                f"{', '.join(available)} (choose one with --split)."
            )
    return available


def folder_revision(folder, splits):
    """A content hash of the files a run reads: results on changed data never pass for results on the old data."""
    return files_hash([folder / name for name in BEIR_FILES] + [folder / "qrels" / f"{split}.tsv" for split in splits])


def read_beir_split(folder, split):
    """One split as mteb's RetrievalSplitData (ids as strings, documents with their titles)."""
    folder = Path(folder)
    corpus = {"id": [], "title": [], "text": []}
    for doc_id, title, text in read_corpus(folder):
        corpus["id"].append(doc_id)
        corpus["title"].append(title)
        corpus["text"].append(text)
    qrels = read_qrels(folder / "qrels" / f"{split}.tsv")
    known = set(corpus["id"])
    dangling = sum(doc_id not in known for judged in qrels.values() for doc_id in judged)
    if dangling:  # they count as relevant documents no system can find: every score is lower
        logger.warning(
            f"{folder / 'qrels' / f'{split}.tsv'}: {dangling} judgement(s) name documents that are not in "
            f"{folder / 'corpus.jsonl'}; scores count them as relevant and unfindable."
        )
    queries = {"id": [], "text": []}
    for query_id, text in read_queries(folder / "queries.jsonl"):
        if query_id in qrels:
            queries["id"].append(query_id)
            queries["text"].append(text)
    if not queries["id"]:
        raise ValueError(
            f"{folder / 'queries.jsonl'} has no query that {folder / 'qrels' / f'{split}.tsv'} judges: "
            "nothing to score."
        )
    return RetrievalSplitData(
        corpus=Dataset.from_dict(corpus), queries=Dataset.from_dict(queries), relevant_docs=qrels, top_ranked=None
    )


class LocalBeirRetrieval(AbsTaskRetrieval):
    """A retrieval task whose data is a local BEIR folder. mteb keeps a task's metadata on its class (it drops
    instance copies when unloading data), so each folder gets its own subclass: use `local_beir_task`."""

    folder: Path

    def load_data(self, num_proc=None, *, timer=None, **kwargs):
        if self.data_loaded:
            return
        self.dataset = {"default": {split: read_beir_split(self.folder, split) for split in self.eval_splits}}
        self.data_loaded = True


def local_beir_task(folder, splits=("test",), name=None, language="eng-Latn"):
    """An mteb task over BEIR folder `folder`, named after the folder unless `name` is given."""
    folder = Path(folder).absolute()
    splits = list(splits)
    check_beir_folder(folder, splits)
    metadata = TaskMetadata(
        name=path_component(name or folder.name, "task name"),  # the result file's name
        description=f"Local BEIR-layout folder {folder}.",
        dataset={"path": str(folder), "revision": folder_revision(folder, splits)},
        type="Retrieval",
        category="t2t",
        modalities=["text"],
        eval_splits=splits,
        eval_langs=[language],
        main_score="ndcg_at_10",
    )
    task_class = type(
        f"LocalBeirRetrieval[{metadata.name}]", (LocalBeirRetrieval,), {"metadata": metadata, "folder": folder}
    )
    return task_class()
