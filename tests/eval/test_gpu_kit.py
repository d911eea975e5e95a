"""The GPU kit (eval/gpu/): what can be checked without a GPU or a network. The scripts parse, the dry run lists every
step with the commands the issue asks for, the carried-file check names what is missing or changed, and the one-arch
patch of the kernel packages' setup.py leaves exactly the GPU's arch."""

import ast
import hashlib
import importlib.util
import re
import subprocess
import sys
import tarfile
import zipfile

import pytest
from helpers import REPO

RUN = REPO / "eval" / "gpu" / "run.sh"
FETCH = REPO / "eval" / "gpu" / "fetch.sh"
STEPS = [
    "env",
    "carry",
    "build",
    "deps",
    "install",
    "probe-nokernels",
    "tests-nokernels",
    "fallback-speed",
    "bench-nokernels",
    "install-kernels",
    "probe-kernels",
    "tests-kernels",
    "bench-kernels",
]
CARRIED = {
    "sdist/mamba_ssm-2.3.2.post1.tar.gz": b"mamba source",
    "sdist/causal_conv1d-1.7.0.tar.gz": b"conv source",
    "wheels/einops-0.8.2-py3-none-any.whl": b"a wheel",
}
# The hard-coded arch list of mamba-ssm 2.3.2.post1's setup.py (causal-conv1d 1.7.0's has the same form)
SETUP_PY = """
cc_flag = []
if True:
    if CUDA_HOME is not None:
        cc_flag.append("-gencode")
        cc_flag.append("arch=compute_75,code=sm_75")
        cc_flag.append("-gencode")
        cc_flag.append("arch=compute_80,code=sm_80")
        if bare_metal_version >= Version("11.8"):
            cc_flag.append("-gencode")
            cc_flag.append("arch=compute_90,code=sm_90")
        if bare_metal_version >= Version("12.8"):
            cc_flag.append("-gencode")
            cc_flag.append("arch=compute_100,code=sm_100")
"""


def load_kit():
    spec = importlib.util.spec_from_file_location("gpu_kit", REPO / "eval" / "gpu" / "kit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_kit(folder, files=CARRIED, listed=None):
    """A kit folder with `files` and a MANIFEST in fetch.sh's `sha256sum` format listing `listed` (default: all)."""
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    lines = [f"{hashlib.sha256(files[name]).hexdigest()}  {name}" for name in (listed or files)]
    (folder / "MANIFEST").write_text("\n".join(lines) + "\n")
    return folder


def run_script(*args):
    return subprocess.run(["bash", str(RUN), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.mark.parametrize("script", [RUN, FETCH], ids=["run.sh", "fetch.sh"])
def test_the_scripts_parse(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_dry_run_lists_every_step_in_order_with_its_commands(tmp_path):
    result = run_script("--dry-run", "--kit", write_kit(tmp_path))
    assert result.returncode == 0, result.stderr
    steps = re.findall(r"^== step (\S+): at most", result.stdout, flags=re.M)
    assert steps == STEPS
    commands = result.stdout
    assert "pytest -m cuda" in commands
    assert "script=eval/gpu/fallback_speed.py" in commands
    assert '"$script" --device cuda --length 2048 --output' in commands
    bench = (
        "bench --device cuda --models mamba mamba2 mamba-stock mamba2-stock bert --lengths 512 2048 8192 32768 "
        "--batch-sizes 1 8 --train-models mamba mamba2 --output-dir"
    )
    assert commands.count(bench) == 2  # without and with the kernels
    assert '--max-seconds "$BENCH_MAX_SECONDS" --stream-chunk-size 0' in commands  # the CUDA op takes no state
    assert "MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE" in commands  # no GitHub download attempt
    assert "patch-gencode" in commands and "pip install --no-index --no-deps --no-build-isolation -e ." in commands
    for name in CARRIED:
        assert re.search(rf"^  ok .* {re.escape(name)}$", commands, flags=re.M), name


@pytest.mark.parametrize(
    "damage, message",
    [
        ("delete", "missing: {kit}/sdist/mamba_ssm-2.3.2.post1.tar.gz"),
        ("change", "changed: {kit}/sdist/mamba_ssm-2.3.2.post1.tar.gz"),
        ("no manifest", "{kit}/MANIFEST is missing: run eval/gpu/fetch.sh here"),
    ],
)
def test_the_dry_run_names_a_missing_or_changed_carried_file(tmp_path, damage, message):
    kit = write_kit(tmp_path)
    source = kit / "sdist" / "mamba_ssm-2.3.2.post1.tar.gz"
    {"delete": source.unlink, "change": lambda: source.write_bytes(b"other"), "no manifest": (kit / "MANIFEST").unlink}[
        damage
    ]()
    result = run_script("--dry-run", "--kit", kit)
    assert result.returncode == 1
    assert message.format(kit=kit) in result.stderr


def test_a_kit_without_the_kernel_sources_is_refused(tmp_path):
    kit = write_kit(tmp_path, listed=["sdist/causal_conv1d-1.7.0.tar.gz", "wheels/einops-0.8.2-py3-none-any.whl"])
    result = run_script("--dry-run", "--kit", kit)
    assert result.returncode == 1
    assert f"no mamba_ssm source: {kit}/MANIFEST lists no sdist/mamba_ssm-*.tar.gz" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "error: --out DIR is required (or --dry-run)"),
        (["--out"], "error: --out needs a value"),
        (["--dry-run", "--budget", "ten"], "error: --budget takes whole seconds, 60 or more"),
        (["--dry-run", "--frobnicate"], "error: unknown argument '--frobnicate'"),
    ],
)
def test_bad_arguments_get_one_line(args, message):
    result = run_script(*args)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message) and result.stderr.count("\n") == 1


def test_an_earlier_runs_output_is_never_overwritten(tmp_path):
    (tmp_path / "summary.txt").write_text("the last run's summary")
    result = run_script("--out", tmp_path)
    assert result.returncode == 2
    expected = f"error: {tmp_path} already holds a kit run (summary.txt): give --out an empty or new folder\n"
    assert result.stderr == expected
    assert (tmp_path / "summary.txt").read_text() == "the last run's summary"


def test_the_patch_keeps_the_gpus_arch_alone():
    kit = load_kit()
    patched = kit.patch_gencode(SETUP_PY, "90")
    ast.parse(patched)  # still Python, the if-blocks keep a body
    assert re.findall(r"arch=compute_(\d+)", patched) == ["90"]
    assert patched.count('cc_flag.append("-gencode")') == 1
    with pytest.raises(ValueError, match=r"does not hold compute_89"):
        kit.patch_gencode(SETUP_PY, "89")


@pytest.mark.parametrize("package", ["mamba_ssm", "causal_conv1d"])
def test_the_patch_fits_the_fetched_setup_py(package):
    """The real setup.py of the fetched sources, where gpu-kit/ was fetched (eval/gpu/fetch.sh)."""
    sources = sorted((REPO / "gpu-kit" / "sdist").glob(f"{package}-*.tar.gz"))
    if not sources:
        pytest.skip("gpu-kit/ not fetched here (bash eval/gpu/fetch.sh)")
    with tarfile.open(sources[-1]) as archive:
        member = next(m for m in archive.getmembers() if m.name.count("/") == 1 and m.name.endswith("/setup.py"))
        text = archive.extractfile(member).read().decode()
    patched = load_kit().patch_gencode(text, "90")
    ast.parse(patched)
    assert re.findall(r"arch=compute_(\d+),code=sm_\d+", patched) == ["90"]


def test_requirements_and_carried_wheels_are_read_right(tmp_path):
    kit = load_kit()
    assert kit.requirement_status("pytest>=1") == ("pytest", pytest.__version__, True)
    assert kit.requirement_status("pytest<1")[2] is False
    assert kit.requirement_status("no-such-distribution-here>=1") == ("no-such-distribution-here", None, False)
    wheel = tmp_path / "Sentence_Transformers-6.3.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("sentence_transformers/__init__.py", "")
        archive.writestr("six.py", "")
        archive.writestr("sentence_transformers-6.3.0.dist-info/METADATA", "")
    assert kit.carried_wheels(tmp_path) == {"sentence-transformers": wheel}
    assert kit.top_level_modules(wheel) == {"sentence_transformers", "six"}
    # every requirement of the project is read, plus what the kit's steps import
    requirements = kit.project_requirements()
    assert "transformers>=5.0,<6" in requirements and "pytest" in requirements
    assert sys.version_info < (3, 11) or len(requirements) == len(set(requirements))
