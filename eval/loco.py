"""LoCoV1 (Saad-Falcon et al., "Benchmarking and Building Long-Context Retrieval Models with LoCo and M2-BERT",
arXiv 2402.07440) as mteb retrieval tasks. mteb does not ship LoCo; the Mamba Retriever paper's long-document
numbers are on its predecessor, LoCoV0.

Public layout: two Hub datasets, `hazyresearch/LoCoV1-Queries` (`qid`, `query`, `answer_pids`, `dataset`) and
`hazyresearch/LoCoV1-Documents` (`pid`, `passage`, `dataset`), split `test`; `dataset` names the sub-task, and a
document is relevant to a query (grade 1) when its `pid` is in the query's `answer_pids`. `--loco-dir DIR` reads a
local copy instead: `DIR/LoCoV1-Queries/` and `DIR/LoCoV1-Documents/`, each a folder of JSON-lines or Parquet files
in the same schema (a snapshot of the Hub repository works as it is), so LoCo runs offline.
"""

from functools import lru_cache
from pathlib import Path

from datasets import Dataset, load_dataset
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.task_metadata import TaskMetadata

from mamba_retrieval.eval.benchmarks import LOCO_SUBTASKS

QUERIES_REPO = "hazyresearch/LoCoV1-Queries"
DOCUMENTS_REPO = "hazyresearch/LoCoV1-Documents"
# The Hub revision read; "main" is not a pin, so results record exactly that (no revision is claimed that was not
# checked).
HUB_REVISION = "main"
SPLIT = "test"


@lru_cache(maxsize=4)
def _load_table(source, local):
    """The whole `test` table of one LoCoV1 dataset (all sub-tasks), read once per process."""
    if local:
        return load_dataset(str(source), split=SPLIT)
    return load_dataset(source, split=SPLIT, revision=HUB_REVISION)


def _sources(loco_dir):
    if loco_dir is None:
        return QUERIES_REPO, DOCUMENTS_REPO, False
    loco_dir = Path(loco_dir).absolute()
    queries, documents = loco_dir / "LoCoV1-Queries", loco_dir / "LoCoV1-Documents"
    for folder in (queries, documents):
        if not folder.is_dir():
            raise FileNotFoundError(
                f"LoCo folder {loco_dir} has no {folder.name}/; it must hold LoCoV1-Queries/ and "
                "LoCoV1-Documents/ (local copies of the Hub datasets)."
            )
    return str(queries), str(documents), True


def read_loco_split(subtask, loco_dir=None):
    queries_source, documents_source, local = _sources(loco_dir)
    queries = _load_table(queries_source, local).filter(lambda row: row["dataset"] == subtask)
    documents = _load_table(documents_source, local).filter(lambda row: row["dataset"] == subtask)
    if len(queries) == 0 or len(documents) == 0:
        raise ValueError(f"LoCoV1 data at {queries_source} / {documents_source} has no rows for sub-task {subtask!r}.")
    qrels = {str(row["qid"]): {str(pid): 1 for pid in row["answer_pids"]} for row in queries}
    return RetrievalSplitData(
        corpus=Dataset.from_dict({"id": [str(pid) for pid in documents["pid"]], "text": documents["passage"]}),
        queries=Dataset.from_dict({"id": [str(qid) for qid in queries["qid"]], "text": queries["query"]}),
        relevant_docs=qrels,
        top_ranked=None,
    )


class LoCoV1Retrieval(AbsTaskRetrieval):
    """One LoCoV1 sub-task; mteb keeps metadata on the class, so `loco_task` builds one subclass per task/source."""

    subtask: str
    loco_dir: str | None = None

    def load_data(self, num_proc=None, *, timer=None, **kwargs):
        if self.data_loaded:
            return
        self.dataset = {"default": {SPLIT: read_loco_split(self.subtask, self.loco_dir)}}
        self.data_loaded = True


def loco_task(task_name, loco_dir=None):
    """The mteb task `task_name` (a key of LOCO_SUBTASKS), read from the Hub or from the local copy `loco_dir`."""
    if task_name not in LOCO_SUBTASKS:
        raise ValueError(f"{task_name!r} is not a LoCoV1 task; they are {', '.join(LOCO_SUBTASKS)}.")
    subtask = LOCO_SUBTASKS[task_name]
    queries_source, _, local = _sources(loco_dir)
    metadata = TaskMetadata(
        name=task_name,
        description=f"LoCoV1 long-document retrieval, sub-task {subtask} ({QUERIES_REPO} + {DOCUMENTS_REPO}).",
        reference="https://arxiv.org/abs/2402.07440",
        dataset={"path": queries_source, "revision": HUB_REVISION if not local else "local-copy"},
        type="Retrieval",
        category="t2t",
        modalities=["text"],
        eval_splits=[SPLIT],
        eval_langs=["eng-Latn"],
        main_score="ndcg_at_10",
    )
    task_class = type(
        f"LoCoV1Retrieval[{task_name}]",
        (LoCoV1Retrieval,),
        {"metadata": metadata, "subtask": subtask, "loco_dir": loco_dir},
    )
    return task_class()
