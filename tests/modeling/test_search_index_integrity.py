"""A search index is one unit: swapped in whole (SIGKILL at any point leaves the old or the new index), one writer
at a time, and a damaged file is refused with its name and `--rebuild`, never searched."""

import json
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from mamba_retrieval.modeling.cli import main
from mamba_retrieval.modeling.search.documents import Document
from mamba_retrieval.modeling.search.index import CURRENT_FILE, SearchIndex, update_index

DOCUMENTS = [Document(f"doc{i}.md", f"text {i}") for i in range(50)]
DAMAGED = r"The index at .* is damaged: .*(index\.json|embeddings\.npy|v-\w+).*--rebuild"


def encode(texts):
    return np.stack([np.full(8, float(text.split()[-1]), dtype=np.float32) for text in texts])


def built(folder):
    update_index(folder, DOCUMENTS, "model-a", encode)
    version = folder / (folder / CURRENT_FILE).read_text()
    return version / "index.json", version / "embeddings.npy"


def rewrite_table(table, change):
    meta = json.loads(table.read_text())
    change(meta)
    table.write_text(json.dumps(meta))


def swap_first_two(meta):
    meta["documents"][0], meta["documents"][1] = meta["documents"][1], meta["documents"][0]


CORRUPTIONS = {
    "nan": lambda table, array: np.save(array, np.where(np.arange(8) == 3, np.nan, np.load(array)).astype(np.float32)),
    "garbage tail": lambda table, array: array.write_bytes(array.read_bytes() + b"garbage"),
    "cut array": lambda table, array: array.write_bytes(array.read_bytes()[:-100]),
    "swapped ids": lambda table, array: rewrite_table(table, swap_first_two),
    "other dimension": lambda table, array: np.save(array, np.zeros((len(DOCUMENTS), 4), dtype=np.float32)),
    "cut table": lambda table, array: table.write_text(table.read_text()[:40]),
    "empty table": lambda table, array: table.write_text(""),
    "table is a list": lambda table, array: table.write_text("[]"),
    "empty array": lambda table, array: array.write_bytes(b""),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_damaged_index_is_refused_by_name_and_rebuilt(tmp_path, corruption):
    table, array = built(tmp_path / "index")
    CORRUPTIONS[corruption](table, array)
    with pytest.raises(
        ValueError, match=r"The index at .* is damaged: .*(index\.json|embeddings\.npy|v-\w+).*--rebuild"
    ):
        SearchIndex.load(tmp_path / "index")
    with pytest.raises(ValueError, match="is damaged"):
        update_index(tmp_path / "index", DOCUMENTS, "model-a", encode)
    index, counts = update_index(tmp_path / "index", DOCUMENTS, "model-a", encode, rebuild=True)
    assert counts["embedded"] == len(DOCUMENTS) and SearchIndex.load(tmp_path / "index").ids == index.ids


def test_two_writers_take_turns(tmp_path):
    embedded = []

    def slow_encode(texts):
        embedded.append(len(texts))
        time.sleep(0.3)  # the other writer starts meanwhile, and must wait for this one's save
        return encode(texts)

    writers = [threading.Thread(target=update_index, args=(tmp_path, DOCUMENTS, "m", slow_encode)) for _ in range(2)]
    for writer in writers:
        writer.start()
        time.sleep(0.05)
    for writer in writers:
        writer.join()
    assert embedded == [len(DOCUMENTS)]  # the second found everything embedded by the first
    assert SearchIndex.load(tmp_path).ids == [d.id for d in DOCUMENTS]


WRITER = """
import sys
import numpy as np
from mamba_retrieval.modeling.search.documents import Document
from mamba_retrieval.modeling.search.index import update_index
folder, n = sys.argv[1], int(sys.argv[2])
sets = {"a": [Document(f"a{i}", f"{i}") for i in range(n)], "b": [Document(f"b{i}", f"{-i}") for i in range(n)]}
encode = lambda texts: np.stack([np.full(64, float(t), dtype=np.float32) for t in texts])
print("ready", flush=True)
while True:
    for name in "ab":
        update_index(folder, sets[name], "m", encode, rebuild=True)
"""


@pytest.mark.slow
def test_sigkill_at_any_point_of_an_update_leaves_the_old_or_the_new_index(tmp_path):
    """A writer alternates between two whole indexes; it is killed at 25 random moments, and every time the index
    reads back as exactly one of the two (ids and embeddings together), and searching it works."""
    rng = random.Random(0)
    n = 2000
    expected = {name: [f"{name}{i}" for i in range(n)] for name in "ab"}
    checked = set()
    for _ in range(25):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(n)], stdout=subprocess.PIPE)
        assert writer.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.4))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        if not (tmp_path / CURRENT_FILE).exists():
            continue  # killed before its first save completed: no index yet, nothing to check
        index = SearchIndex.load(tmp_path)
        name = "a" if index.ids[0].startswith("a") else "b"
        assert index.ids == expected[name]
        values = index.embeddings[:, 0]
        assert values.tolist() == [float(i if name == "a" else -i) for i in range(n)]
        assert index.search(np.ones(64, dtype=np.float32), 1)[0][0] == expected[name][n - 1 if name == "a" else 0]
        checked.add(name)
    assert checked == {"a", "b"}  # killed while either index was current, so both swaps were crossed
    assert len(list(tmp_path.glob("v-*"))) <= 2  # what killed writers leave is removed by the next save


def test_a_folder_that_is_not_an_index_is_never_written_into(tmp_path, capsys):
    """`--index ~/project` once would have deleted the project's v-* folders (the clean-up of old versions): a folder
    holding anything but an index is refused before any file goes into it."""
    project = tmp_path / "project"
    (project / "v-1.0").mkdir(parents=True)
    (project / "v-1.0" / "notes.txt").write_text("the user's")
    (project / "README.md").write_text("mine")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("a document")
    assert main(["index", str(tmp_path / "docs"), "--index", str(project)]) == 2
    assert "is not a search index and holds other files (README.md, v-1.0)" in capsys.readouterr().err
    assert sorted(p.name for p in project.iterdir()) == ["README.md", "v-1.0"]
    assert (project / "v-1.0" / "notes.txt").read_text() == "the user's"
