"""Which mteb tasks a run evaluates: mteb task names, named benchmarks, LoCoV1 tasks and local BEIR folders."""

import mteb

from mamba_retrieval.eval.benchmarks import BENCHMARKS, LOCO_SUBTASKS
from mamba_retrieval.eval.local_tasks import local_beir_task
from mamba_retrieval.eval.loco import loco_task


def get_named_task(name, loco_dir=None):
    if name in LOCO_SUBTASKS:
        return loco_task(name, loco_dir)
    try:
        return mteb.get_task(name)
    except KeyError:
        raise ValueError(
            f"No task named {name!r} in mteb {mteb.__version__} or LoCoV1; see `mteb.get_tasks()` for "
            "task names, or pass a local folder with --beir-dir."
        ) from None


def benchmark_task_names(benchmark):
    if benchmark not in BENCHMARKS:
        try:
            return [task.metadata.name for task in mteb.get_benchmark(benchmark).tasks]
        except (KeyError, ValueError):
            raise ValueError(
                f"No benchmark named {benchmark!r}: use {', '.join(BENCHMARKS)} or an mteb benchmark name."
            ) from None
    names = BENCHMARKS[benchmark]
    if names is None:
        names = [task.metadata.name for task in mteb.get_benchmark(benchmark).tasks]
    return list(names)


def select_tasks(task_names=(), benchmark=None, beir_dirs=(), split=None, loco_dir=None):
    """Task objects for a run, in the order given; `split` replaces each task's evaluation splits."""
    names = list(task_names or ())
    if benchmark:
        names += [name for name in benchmark_task_names(benchmark) if name not in names]
    tasks = []
    for name in names:
        task = get_named_task(name, loco_dir)
        if split is not None:
            if split not in task.metadata.eval_splits:
                raise ValueError(
                    f"Task {name} has no split {split!r}; its evaluation splits are "
                    f"{', '.join(task.metadata.eval_splits)}."
                )
            task = task.filter_eval_splits([split])
        tasks.append(task)
    for folder in beir_dirs or ():
        tasks.append(local_beir_task(folder, splits=[split or "test"]))
    if not tasks:
        raise ValueError("Nothing to evaluate: pass --tasks, --benchmark or --beir-dir.")
    seen = set()
    for task in tasks:
        if task.metadata.name in seen:
            raise ValueError(
                f"Two tasks are named {task.metadata.name!r}; each needs its own name (rename a --beir-dir folder)."
            )
        seen.add(task.metadata.name)
    return tasks
