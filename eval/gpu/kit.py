"""The Python parts of eval/gpu/run.sh, the GPU kit (eval/gpu/README.md).

Standard library only (plus `packaging` where the machine has it), so that it runs before anything is installed:

    check-carry KIT               every file KIT/MANIFEST lists is there with its hash, and the kernel sources are
    deps KIT SITE                 what the project needs, what the machine has; carried wheels for what is missing
    arch                          the compute capability of GPU 0 as nvcc spells it (90 for an H100/H200)
    patch-gencode SETUP_PY ARCH   a kernel package's setup.py builds for ARCH alone (its arch list is hard-coded)
    probe                         torch, CUDA, GPU, and which fast paths the model module found
"""

import hashlib
import importlib
import importlib.metadata
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KERNEL_PACKAGES = ("mamba_ssm", "causal_conv1d")
# What the kit's steps import beyond the project's own dependencies: the tests, the bench, and mamba_ssm's Python
EXTRA_REQUIREMENTS = ("pytest", "psutil", "einops", "triton", "ninja")
# What the steps import first; a ModuleNotFoundError names the next carried wheel to install
IMPORT_PROBE = "import torch, transformers, tokenizers, safetensors, sentence_transformers, psutil, pytest, einops"


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


# ------------------------------------------------------------------------------------------------------------------
# check-carry
# ------------------------------------------------------------------------------------------------------------------


def read_manifest(kit):
    """[(sha256, relative path)] from KIT/MANIFEST, written by fetch.sh in `sha256sum` format."""
    manifest = kit / "MANIFEST"
    if not manifest.is_file():
        return None
    entries = []
    for number, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](\S.*)", line)
        if not match:
            fail(f"{manifest}:{number}: not a 'sha256  path' line: {line!r}; run eval/gpu/fetch.sh again")
        entries.append((match[1], match[2]))
    return entries


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_carry(kit):
    """Print one line per carried file; return the problems (missing, changed, kernel sources absent)."""
    kit = Path(kit)
    entries = read_manifest(kit)
    if entries is None:
        return [f"{kit}/MANIFEST is missing: run eval/gpu/fetch.sh here, then carry {kit.name}"]
    problems = []
    for digest, name in entries:
        path = kit / name
        if not path.is_file():
            problems.append(f"missing: {path} (listed in {kit}/MANIFEST; run eval/gpu/fetch.sh again)")
            print(f"  MISSING  {name}")
        elif sha256(path) != digest:
            problems.append(f"changed: {path} (its sha256 differs from {kit}/MANIFEST; run eval/gpu/fetch.sh again)")
            print(f"  CHANGED  {name}")
        else:
            print(f"  ok {path.stat().st_size / 2**20:8.2f} MiB  {name}")
    listed = {name for _, name in entries}
    for package in KERNEL_PACKAGES:
        sources = [n for n in listed if n.startswith(f"sdist/{package}-") and n.endswith(".tar.gz")]
        built = [n for n in listed if n.startswith(f"built/{package}-") and n.endswith(".whl")]
        if not sources and not built:
            problems.append(f"no {package} source: {kit}/MANIFEST lists no sdist/{package}-*.tar.gz (or built wheel)")
    return problems


# ------------------------------------------------------------------------------------------------------------------
# deps
# ------------------------------------------------------------------------------------------------------------------


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def project_requirements():
    """The project's [project] dependencies (pyproject.toml) and the kit's extras, as requirement strings."""
    text = (REPO / "pyproject.toml").read_text()
    try:
        import tomllib

        dependencies = tomllib.loads(text)["project"]["dependencies"]
    except ImportError:  # Python 3.10: the dependency list's quoted strings
        block = text.split("dependencies = [", 1)[1].split("]", 1)[0]
        dependencies = re.findall(r'^\s*"([^"]+)"', block, flags=re.M)
    return list(dependencies) + list(EXTRA_REQUIREMENTS)


def requirement_status(requirement):
    """(distribution name, installed version or None, satisfied?) of one requirement string."""
    try:
        from packaging.requirements import Requirement

        parsed = Requirement(requirement)
        name, specifier = parsed.name, parsed.specifier
    except ImportError:  # no packaging: presence only
        name, specifier = re.match(r"[A-Za-z0-9_.-]+", requirement)[0], None
    try:
        installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return name, None, False
    return name, installed, specifier is None or specifier.contains(installed, prereleases=True)


def carried_wheels(wheel_dir):
    """{normalized distribution name: wheel path} of the carried wheels."""
    return {normalize(path.name.split("-", 1)[0]): path for path in sorted(Path(wheel_dir).glob("*.whl"))}


def top_level_modules(wheel):
    """The importable top-level names a wheel installs (read from its file list)."""
    with zipfile.ZipFile(wheel) as archive:
        names = {entry.split("/", 1)[0] for entry in archive.namelist()}
    return {
        name.removesuffix(".py").split(".", 1)[0]
        for name in names
        if not name.endswith((".dist-info", ".data")) and not name.endswith(".pth")
    }


def pip_install(wheels, site):
    command = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile"]
    command += ["--disable-pip-version-check", "--upgrade", "--target", str(site), *map(str, wheels)]
    print("$ " + " ".join(command), flush=True)
    return subprocess.run(command).returncode == 0


def import_probe():
    """None when the steps' imports load; else the error text (a fresh interpreter: what the steps will see)."""
    result = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True)
    return None if result.returncode == 0 else (result.stderr.strip().splitlines() or ["(no output)"])[-1]


def deps(kit, site):
    """Report the requirements; install a carried wheel for each one missing or of a version the project does not
    accept; then install carried wheels for the modules the steps' imports still miss. Returns the problems left."""
    wheels = carried_wheels(Path(kit) / "wheels")
    print(f"python {sys.version.split()[0]} at {sys.executable}; carried wheels: {len(wheels)}")
    to_install, unmet = [], []
    for requirement in project_requirements():
        name, installed, ok = requirement_status(requirement)
        carried = wheels.get(normalize(name))
        action = "" if ok else (f" -> install carried {carried.name}" if carried else " -> none carried")
        print(f"  {'ok  ' if ok else 'NEED'} {requirement:<32} installed: {installed or '-'}{action}")
        if not ok and carried:
            to_install.append(carried)
        elif not ok:
            unmet.append(name)
    if to_install and not pip_install(to_install, site):
        return ["pip could not install the carried wheels (its output is above)"]
    installed_names = {normalize(path.name.split("-", 1)[0]) for path in to_install}
    for _ in range(len(wheels) + 1):
        error = import_probe()
        if error is None:
            print(f"import probe ok ({IMPORT_PROBE}); unmet, none carried: {', '.join(unmet) or 'none'}")
            return []
        missing = re.search(r"No module named '([^'.]+)", error)
        candidates = [
            wheel
            for name, wheel in wheels.items()
            if missing and name not in installed_names and missing[1] in top_level_modules(wheel)
        ]
        print(f"import probe: {error}" + (f" -> install carried {candidates[0].name}" if candidates else ""))
        if not candidates or not pip_install(candidates[:1], site):
            return [f"the steps' imports fail: {error}"]
        installed_names.add(normalize(candidates[0].name.split("-", 1)[0]))
    return [f"the steps' imports fail: {error}"]


# ------------------------------------------------------------------------------------------------------------------
# patch-gencode
# ------------------------------------------------------------------------------------------------------------------

GENCODE_PAIR = re.compile(  # cc_flag.append("-gencode") / cc_flag.append("arch=compute_90,code=sm_90")
    r'^(?P<indent>[ \t]*)cc_flag\.append\("-gencode"\)\n'
    r'[ \t]*cc_flag\.append\("arch=compute_(?P<arch>\w+),code=sm_\w+"\)$',
    re.M,
)


def patch_gencode(text, arch):
    """setup.py text whose hard-coded -gencode list holds ARCH alone. mamba-ssm and causal-conv1d list every arch
    their nvcc knows (nine with CUDA 13) and torch then ignores TORCH_CUDA_ARCH_LIST, since arch flags are given;
    building one arch is ~1/9 of the work. Raises ValueError when the list is not in the expected form."""
    arches = [match["arch"] for match in GENCODE_PAIR.finditer(text)]
    if arch not in arches:
        raise ValueError(f"setup.py's -gencode list {arches} does not hold compute_{arch}; build it unpatched")
    patched = GENCODE_PAIR.sub(lambda m: m[0] if m["arch"] == arch else f"{m['indent']}pass  # gpu kit: one arch", text)
    kept = re.findall(r'arch=compute_(\w+),code=sm_\w+"', patched)
    if kept != [arch]:
        raise ValueError(f"after the patch setup.py still names the arches {kept}")
    return patched


# ------------------------------------------------------------------------------------------------------------------
# arch, probe
# ------------------------------------------------------------------------------------------------------------------


def gpu_arch():
    import torch

    if not torch.cuda.is_available():
        fail("torch sees no CUDA GPU")
    major, minor = torch.cuda.get_device_capability(0)
    return f"{major}{minor}"


def probe():
    import torch

    facts = dict(
        python=sys.version.split()[0],
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        cuda_available=torch.cuda.is_available(),
    )
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        facts.update(
            gpu=properties.name,
            capability=".".join(map(str, torch.cuda.get_device_capability(0))),
            gpu_memory_gib=round(properties.total_memory / 2**30, 1),
            multiprocessors=properties.multi_processor_count,
        )
    for name in ("transformers", "sentence-transformers", "triton", "mamba-ssm", "causal-conv1d", "numba"):
        try:
            facts[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            facts[name] = None
    from mamba_retrieval.modeling import modeling_mamba_retrieval as model

    facts["fast_paths"] = {
        "mamba1_cuda_selective_scan": model.selective_scan_fn is not None,
        "mamba2_triton_ssd": model.mamba_chunk_scan_combined is not None,
        "causal_conv1d_cuda": model.causal_conv1d_fn is not None,
        "fused_cpu_scan": model.fused_selective_scan is not None,
    }
    for module in ("selective_scan_cuda", "causal_conv1d_cuda", "mamba_ssm"):
        try:  # why a kernel is absent: the import error itself
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - any failure is the fact reported
            facts.setdefault("import_errors", {})[module] = f"{type(error).__name__}: {error}"[:300]
    print(json.dumps(facts, indent=1))
    print(
        "fast paths: " + ", ".join(f"{name} {'yes' if found else 'no'}" for name, found in facts["fast_paths"].items())
    )


def main(argv):
    if argv[:1] == ["check-carry"] and len(argv) == 2:
        problems = check_carry(argv[1])
    elif argv[:1] == ["deps"] and len(argv) == 3:
        problems = deps(argv[1], argv[2])
    elif argv[:1] == ["patch-gencode"] and len(argv) == 3:
        path = Path(argv[1])
        try:
            path.write_text(patch_gencode(path.read_text(), argv[2]))
        except (OSError, ValueError) as error:
            fail(f"{path}: {error}")
        print(f"{path}: -gencode arch=compute_{argv[2]},code=sm_{argv[2]} only")
        problems = []
    elif argv == ["arch"]:
        print(gpu_arch())
        problems = []
    elif argv == ["probe"]:
        probe()
        problems = []
    else:
        fail(f"usage: {__doc__.split(chr(10) + chr(10))[1]}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
