"""The research studies are scripts of the checkout (eval/studies/, run as `python eval/studies/NAME.py`), not part
of the installed package: each still starts, and the package lists every folder of code but them."""

import subprocess
import sys

import pytest
from helpers import REPO

STUDIES = sorted((REPO / "eval" / "studies").glob("*.py"))


def test_every_study_starts_as_a_script():
    # one interpreter for all of them: each script's main() with --help, as `python eval/studies/NAME.py --help`
    code = f"""
import runpy, sys
for script in {[str(path) for path in STUDIES]!r}:
    sys.argv = [script, "--help"]
    sys.path.insert(0, {str(REPO / "eval" / "studies")!r})
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit:
        assert exit.code in (0, None), (script, exit.code)
    else:
        raise AssertionError(script + ": --help did not exit")
    print("ok", script)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("\nok ") + result.stdout.startswith("ok ") == len(STUDIES) >= 8


def test_the_package_installs_every_code_folder_but_the_studies():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {
        f"mamba_retrieval.{init.parent.relative_to(REPO).as_posix().replace('/', '.')}"
        for top in ("modeling", "conversion", "eval", "hub_cards")
        for init in (REPO / top).rglob("__init__.py")
        if "pretrained" not in init.parts
    }
    assert folders <= set(settings["packages"]), sorted(folders - set(settings["packages"]))
    assert not [name for name in settings["packages"] if "studies" in name]
    assert not (REPO / "eval" / "studies" / "__init__.py").exists()  # a script folder, never a package
