#!/usr/bin/env bash
# The GPU kit (eval/gpu/README.md). On a machine with nvcc, a CUDA PyTorch and no network: install what the kit
# folder carries, run the cuda-marked parity tests, the fallback timing and `mamba-retrieval bench` on the GPU without
# the kernel packages while mamba-ssm and causal-conv1d build for the one GPU arch present, then install those and
# run the tests and the bench again. Each step has a time limit and its own log; a failed step is recorded, and the
# run goes on. OUT gets summary.txt, run.log and results.tar.gz (every log and result file), updated after each step.
#
#   bash eval/gpu/run.sh --out DIR [--kit gpu-kit] [--budget 540] [--skip-build] [--work DIR]
#   (--work: the scratch folder, default /tmp/mamba-retrieval-gpu-kit; its logs, results and env are replaced)
#   bash eval/gpu/run.sh --dry-run [--kit gpu-kit]   print every step and its commands; check the carried files
set -uo pipefail # not -e: a failed step is recorded and the next one runs

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT="" KIT=gpu-kit BUDGET=540 SKIP_BUILD=0 DRY_RUN=0 WORK=""
while [ $# -gt 0 ]; do
    case $1 in
    --out | --kit | --budget | --work)
        [ $# -ge 2 ] || { echo "error: $1 needs a value (see --help)" >&2; exit 2; }
        case $1 in --out) OUT=$2 ;; --kit) KIT=$2 ;; --budget) BUDGET=$2 ;; --work) WORK=$2 ;; esac
        shift 2 ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ $BUDGET =~ ^[0-9]+$ ]] && [ "$BUDGET" -ge 60 ] || { echo "error: --budget takes whole seconds, 60 or more" >&2; exit 2; }
[ "$DRY_RUN" = 1 ] || [ -n "$OUT" ] || { echo "error: --out DIR is required (or --dry-run)" >&2; exit 2; }
for name in summary.txt run.log results.tar.gz; do
    [ -n "$OUT" ] && [ -e "$OUT/$name" ] &&
        { echo "error: $OUT already holds a kit run ($name): give --out an empty or new folder" >&2; exit 2; }
done
cd "$REPO" || exit 2
case $KIT in /*) ;; *) KIT=$REPO/$KIT ;; esac

PYTHON=${PYTHON:-python3} # the GPU machine's python3 is the one with the CUDA PyTorch
WORK=${WORK:-${TMPDIR:-/tmp}/mamba-retrieval-gpu-kit}
# Seconds kept for phase B (install the kernels, tests, bench) while the build runs; the bench's --max-seconds
PHASE_B_RESERVE=210 BENCH_MAX_SECONDS=${BENCH_MAX_SECONDS:-20}
# Where nvcc usually is when it is not on PATH; torch's CUDA_HOME looks there too
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH=/usr/local/cuda/bin:$PATH; fi
# The build runs beside phase A's GPU steps, on cores of its own, so that it slows their Python (kernel launches) less
CORES=$(nproc)
FG_PIN=() BUILD_PIN=() BUILD_JOBS=$CORES
if command -v taskset >/dev/null && [ "$CORES" -ge 8 ]; then
    FG_PIN=(taskset -c 0-2) BUILD_PIN=(taskset -c "3-$((CORES - 1))") BUILD_JOBS=$((CORES - 3))
fi
export REPO KIT WORK PYTHON BUILD_JOBS BENCH_MAX_SECONDS
export PYTHONUNBUFFERED=1 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 # nothing to reach: fail fast, never hang
export MAMBA_RETRIEVAL_CACHE=$WORK/cache NUMBA_CACHE_DIR=$WORK/numba-cache
export PYTHONPATH=$WORK/site${PYTHONPATH:+:$PYTHONPATH} # carried wheels the machine lacked (kit.py deps)

# ------------------------------------------------------------------------------------------------------------------
# Steps: each runs in its own bash under `timeout`; exit 99 means "skipped" (the last line says why)
# ------------------------------------------------------------------------------------------------------------------

do_env() {
    date -u
    uname -a
    echo "cores: $(nproc); build on ${BUILD_JOBS} of them"
    free -g
    nvidia-smi
    nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version,clocks.max.sm --format=csv
    nvcc --version || echo "no nvcc on PATH: the build step will fail"
    ninja --version || echo "no ninja: torch would compile the kernels one file at a time"
    "$PYTHON" -c "import sys, torch, torch.utils.cpp_extension as c
print(sys.version); print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'available', torch.cuda.is_available())
print('CUDA_HOME', c.CUDA_HOME)"
    "$PYTHON" -m pip freeze >"$WORK/env/pip-freeze-before.txt"
    echo "pip freeze: $(wc -l <"$WORK/env/pip-freeze-before.txt") packages (env/pip-freeze-before.txt)"
}

do_carry() {
    "$PYTHON" eval/gpu/kit.py check-carry "$KIT"
}

do_deps() {
    "$PYTHON" eval/gpu/kit.py deps "$KIT" "$WORK/site"
}

do_install() {
    local check="import mamba_retrieval.modeling.modeling_mamba_retrieval as m, mamba_retrieval.eval.bench
print('mamba_retrieval imports from', m.__file__)"
    if "$PYTHON" -m pip install --no-index --no-deps --no-build-isolation -e . && (cd / && "$PYTHON" -c "$check"); then
        return 0
    fi
    echo "the editable install failed or does not import: linking the packages into $WORK/site instead"
    mkdir -p "$WORK/site/mamba_retrieval"
    for package in modeling conversion eval hub_cards; do ln -sfn "$REPO/$package" "$WORK/site/mamba_retrieval/$package"; done
    (cd / && "$PYTHON" -c "$check")
}

do_probe() {
    "$PYTHON" eval/gpu/kit.py probe
}

do_tests() {
    local files
    files=$(grep -rlE "pytest\.mark\.cuda\b" tests --include='*.py' | sort)
    [ -n "$files" ] || { echo "skipped: no cuda-marked tests under tests/"; return 99; }
    # shellcheck disable=SC2086 # one file a word
    "$PYTHON" -m pytest -m cuda -q -rA -p no:cacheprovider --junitxml="$WORK/results/tests-$PHASE.xml" $files
}

do_fallback_speed() {
    local script=eval/gpu/fallback_speed.py
    [ -f "$script" ] || { echo "skipped: $script is not in this checkout"; return 99; }
    "$PYTHON" "$script" --device cuda --length 2048 --output "$WORK/results/fallback_speed.json"
}

do_bench() {
    # --stream-chunk-size 0: ours in one pass. Streamed chunks carry a state, which mamba_ssm's Mamba-1 op does not
    # take, so a streamed Mamba-1 would time the fallback scan even with the kernels; memory is no limit there.
    "$PYTHON" -m mamba_retrieval.modeling.cli bench --device cuda \
        --models mamba mamba2 mamba-stock mamba2-stock bert --lengths 512 2048 8192 32768 --batch-sizes 1 8 \
        --train-models mamba mamba2 --output-dir "$WORK/results/bench-$PHASE" --no-plot \
        --max-seconds "$BENCH_MAX_SECONDS" --stream-chunk-size 0
}

do_build() {
    # Both packages at once (13 .cu/.cpp files for as many cores), each for this GPU's arch alone (kit.py
    # patch-gencode). FORCE_BUILD: else their setup.py first tries to download a prebuilt wheel from GitHub.
    local arch package sdist source pids=() names=() status=0
    arch=$("$PYTHON" eval/gpu/kit.py arch) || return 1
    echo "GPU arch: sm_$arch; MAX_JOBS=$BUILD_JOBS per package"
    mkdir -p "$WORK/build" "$WORK/built"
    rm -f "$WORK"/built/*.whl # half of an earlier build: both anew
    for package in causal_conv1d mamba_ssm; do
        sdist=$(ls "$KIT"/sdist/"$package"-*.tar.gz 2>/dev/null | head -1)
        [ -n "$sdist" ] || { echo "$package: no sdist in $KIT/sdist"; status=1; continue; }
        source=$WORK/build/$(basename "$sdist" .tar.gz)
        rm -rf "$source" && tar -xzf "$sdist" -C "$WORK/build" || { status=1; continue; }
        "$PYTHON" eval/gpu/kit.py patch-gencode "$source/setup.py" "$arch" ||
            echo "$package: building every arch its setup.py lists (several times slower)"
        (
            cd "$source" && start=$(date +%s) &&
                MAX_JOBS=$BUILD_JOBS MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE \
                    MAMBA_SKIP_CUDA_BUILD=FALSE CAUSAL_CONV1D_SKIP_CUDA_BUILD=FALSE \
                    "$PYTHON" -m pip wheel --no-index --no-deps --no-build-isolation -v -w "$WORK/built" . \
                    >"$WORK/logs/build-$package.log" 2>&1
            rc=$?
            echo "$package: exit $rc after $(($(date +%s) - start)) s (logs/build-$package.log)"
            exit $rc
        ) &
        pids+=($!) names+=("$package")
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { status=1; tail -n 40 "$WORK/logs/build-${names[$i]}.log"; }
    done
    ls -l "$WORK/built"
    return $status
}

do_install_kernels() {
    local wheels
    wheels=$(ls "$KIT"/built/*.whl "$WORK"/built/*.whl 2>/dev/null)
    [ -n "$wheels" ] || { echo "skipped: no built kernel wheels (the build failed or was skipped)"; return 99; }
    # shellcheck disable=SC2086 # one wheel a word
    "$PYTHON" -m pip install --no-index --no-deps --force-reinstall $wheels
}

export -f do_env do_carry do_deps do_install do_probe do_tests do_fallback_speed do_bench do_build do_install_kernels

# ------------------------------------------------------------------------------------------------------------------
# The runner
# ------------------------------------------------------------------------------------------------------------------

START=$(date +%s)
DEADLINE=$((START + BUDGET))
KEEP=0 # seconds that foreground steps leave for later (phase B's reserve while the build runs)
RUNLOG=$OUT/run.log

log() { echo "[$(date -u +%H:%M:%S) +$(($(date +%s) - START))s] $*" | tee -a "$RUNLOG"; }

write_summary() { # OUT/summary.txt and OUT/results.tar.gz, each replaced whole (a kill leaves the last good one)
    local tmp=$OUT/.summary.$BASHPID
    {
        echo "mamba-retrieval GPU kit, started $(date -u -d "@$START" +%FT%TZ), budget ${BUDGET}s, $(($(date +%s) - START))s so far"
        printf '%-18s %-8s %4s %7s %6s  %s\n' step status rc seconds limit "last line of its log"
        cat "$WORK/steps.tsv" 2>/dev/null
    } >"$tmp" && mv "$tmp" "$OUT/summary.txt"
    tar -czf "$OUT/.results.$BASHPID.tar.gz" -C "$WORK" logs results env steps.tsv 2>/dev/null
    mv "$OUT/.results.$BASHPID.tar.gz" "$OUT/results.tar.gz"
}

record() { # record NAME STATUS RC SECONDS LIMIT NOTE
    printf '%-18s %-8s %4s %7s %6s  %s\n' "$@" >>"$WORK/steps.tsv"
    write_summary
}

step() { # step NAME MAX_SECONDS FUNCTION [PIN...]: run FUNCTION under a time limit, log it, record the outcome
    local name=$1 max=$2 fn=$3 limit start rc status note
    shift 3
    if [ "$DRY_RUN" = 1 ]; then
        echo "== step $name: at most ${max}s${*:+, pinned: $*}${PHASE:+, PHASE=$PHASE}"
        declare -f "$fn" | sed '1,2d;$d'
        return 0
    fi
    # a build that ended without wheels leaves phase B nothing to do: its reserve goes back to phase A
    if [ -n "${BUILD_PID:-}" ] && ! kill -0 "$BUILD_PID" 2>/dev/null && ! grep -q '^build  *ok ' "$WORK/steps.tsv"; then
        KEEP=0
    fi
    limit=$((DEADLINE - $(date +%s) - 15 - KEEP))
    [ "$max" -lt "$limit" ] && limit=$max
    if [ "$limit" -lt 10 ]; then
        log "== $name: skipped, out of time"
        record "$name" skipped - 0 "$limit" "out of time (budget ${BUDGET}s)"
        return 1
    fi
    log "== $name: $fn, limit ${limit}s${*:+, pinned: $*}"
    start=$(date +%s)
    if [ "${STEP_QUIET:-0}" = 1 ]; then # a background step: its own log only, run.log gets it when it ends
        timeout -k 10 "$limit" "$@" bash -c "$fn" </dev/null >"$WORK/logs/$name.log" 2>&1
        rc=$?
    else
        timeout -k 10 "$limit" "$@" bash -c "$fn" </dev/null 2>&1 | tee "$WORK/logs/$name.log" >>"$RUNLOG"
        rc=${PIPESTATUS[0]}
    fi
    case $rc in 0) status=ok ;; 99) status=skipped ;; 124 | 137) status=TIMEOUT ;; *) status=FAILED ;; esac
    note=$(grep -v '^[[:space:]]*$' "$WORK/logs/$name.log" | tail -n 1 | cut -c1-110)
    log "== $name: $status (exit $rc) after $(($(date +%s) - start))s"
    record "$name" "$status" "$rc" "$(($(date +%s) - start))" "$limit" "$note"
    [ "$rc" = 0 ]
}

if [ "$DRY_RUN" = 1 ]; then
    echo "dry run: python $PYTHON, kit $KIT, work $WORK, budget ${BUDGET}s, $CORES cores"
    echo "pinning: foreground ${FG_PIN[*]:-none}, build ${BUILD_PIN[*]:-none} with MAX_JOBS=$BUILD_JOBS"
else
    # an earlier run's logs and results must not pass for this one's (its built wheels and installed ones stay)
    rm -rf "$WORK/logs" "$WORK/results" "$WORK/env" "$WORK/steps.tsv"
    mkdir -p "$OUT" "$WORK/logs" "$WORK/results" "$WORK/env" || exit 2
    OUT=$(cd "$OUT" && pwd) RUNLOG=$OUT/run.log
    rm -f "$RUNLOG"
    log "mamba-retrieval GPU kit: repo $REPO, kit $KIT, work $WORK, out $OUT, budget ${BUDGET}s"
    log "$CORES cores; pinned: GPU steps ${FG_PIN[*]:-no}, build ${BUILD_PIN[*]:-no} (MAX_JOBS=$BUILD_JOBS)"
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,clocks.sm,power.draw,temperature.gpu \
        --format=csv -l 1 >"$WORK/env/gpu-trace.csv" 2>&1 &
    TRACE_PID=$!
fi

# Phase 0: what is here, the carried files, the build (background), the carried wheels the machine lacks, the project
step env 60 do_env
step carry 30 do_carry

# The build, in the background from here on: the longest step, and it needs only torch, nvcc and the sources. Its
# wheels are installed after phase A, so that no phase-A process sees half of them.
BUILD_PID=""
if [ "$DRY_RUN" = 1 ]; then
    STEP_QUIET=1 step build "min(420, what phase B leaves)" do_build "${BUILD_PIN[@]}"
elif ls "$KIT"/built/*.whl >/dev/null 2>&1; then
    record build skipped - 0 - "built wheels carried in $KIT/built"
elif [ "$SKIP_BUILD" = 1 ]; then
    record build skipped - 0 - "--skip-build"
elif ls "$WORK"/built/mamba_ssm-*.whl "$WORK"/built/causal_conv1d-*.whl >/dev/null 2>&1; then
    record build skipped - 0 - "built by an earlier run on this machine ($WORK/built)"
elif build_max=$((DEADLINE - $(date +%s) - 15 - PHASE_B_RESERVE)) && [ "$build_max" -lt 60 ]; then
    record build skipped - 0 "$build_max" "the budget leaves it ${build_max}s after phase B's ${PHASE_B_RESERVE}s"
else
    [ "$build_max" -gt 420 ] && build_max=420
    STEP_QUIET=1 step build "$build_max" do_build "${BUILD_PIN[@]}" &
    BUILD_PID=$! KEEP=$PHASE_B_RESERVE
fi

step deps 120 do_deps "${FG_PIN[@]}"
step install 120 do_install "${FG_PIN[@]}"
step probe-nokernels 60 do_probe "${FG_PIN[@]}"

# Phase A: the paths that need no build, while the kernels build beside them
export PHASE=nokernels
step tests-nokernels 150 do_tests "${FG_PIN[@]}"
step fallback-speed 90 do_fallback_speed "${FG_PIN[@]}"
step bench-nokernels 200 do_bench "${FG_PIN[@]}"
if [ -n "$BUILD_PID" ]; then
    log "waiting for the build (logs/build.log)"
    wait "$BUILD_PID"
    cat "$WORK/logs/build.log" >>"$RUNLOG"
    # ninja's own record of each compiled file (start and end in ms), also of a build cut short: the next run's plan
    for ninja_log in "$WORK"/build/*/build/*/.ninja_log; do
        [ -f "$ninja_log" ] || continue
        package=${ninja_log#"$WORK"/build/}
        cp "$ninja_log" "$WORK/logs/ninja_log-${package%%/*}.txt"
        awk -F'\t' -v p="${package%%/*}" '!/^#/ { printf "%s: %6.1f s  %s\n", p, ($2 - $1) / 1000, $4 }' \
            "$ninja_log" | tee -a "$RUNLOG"
    done
fi
KEEP=0

# Phase B: with the kernels
export PHASE=kernels
if step install-kernels 60 do_install_kernels || [ "$DRY_RUN" = 1 ]; then
    step probe-kernels 60 do_probe "${FG_PIN[@]}"
    step tests-kernels 150 do_tests "${FG_PIN[@]}"
    step bench-kernels 300 do_bench "${FG_PIN[@]}"
fi

if [ "$DRY_RUN" = 1 ]; then
    echo "== carried files ($KIT):"
    exec "$PYTHON" eval/gpu/kit.py check-carry "$KIT"
fi
kill "$TRACE_PID" 2>/dev/null
"$PYTHON" -m pip freeze >"$WORK/env/pip-freeze-after.txt" 2>&1
log "done in $(($(date +%s) - START))s: $OUT/summary.txt, run.log, results.tar.gz"
write_summary
cat "$OUT/summary.txt"
