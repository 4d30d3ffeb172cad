#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: GPU parity tests, then every benchmark; writes a Markdown summary to $OUT.
#
#   bash bench/run_gpu.sh [pytest -k expression for the benchmarks]
#
# Environment: PARITY_TESTS (test files to run natively), PARITY_TIMEOUT / BENCH_TIMEOUT (seconds),
# PGOCC_BENCH_ROUNDS (timed rounds per benchmark), SKIP_PARITY=1 / SKIP_BENCH=1 to split the work over two calls
# where one call is limited (the parity step takes about 6 minutes on an H100, gsplat's build included).
# On a machine without internet access, put the wheels of the packages it lacks (gsplat and rich's dependencies,
# nuscenes-devkit, pyquaternion, PyTurboJPEG, ...) in .whl/ and libturbojpeg0 in .deb/ (README, "GPU runs"); the
# figures in bench/RESULTS.md come from an image with torch 2.11, triton 3.6 and pytest-benchmark preinstalled.
# PGOCC_GIT_SHA names the commit when the copy has no .git.
set -uo pipefail
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
source bench/gpu_env.sh

# gsplat JIT-builds its CUDA extension on first use: build for this GPU only, with every core.
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
# The kernels' parity tests (their "gpu" cases run natively here) and the model's reference-vs-Triton parity.
PARITY_TESTS=${PARITY_TESTS:-"tests/test_aniso_sample*.py tests/test_st_fusion*.py tests/test_gs_raster*.py tests/test_gs2vox*.py tests/test_fps*.py tests/test_dist_attention*.py tests/test_model_parity.py tests/test_model.py tests/test_model_checks.py"}
parity_rc=0
if [[ "${SKIP_PARITY:-0}" != 1 ]]; then
  echo "== GPU parity tests"
  # shellcheck disable=SC2086
  timeout ${PARITY_TIMEOUT:-480} python3 -m pytest $PARITY_TESTS -q -p no:cacheprovider -m "not slow" \
    --junitxml="$OUT/parity.xml" 2>&1 | tee "$OUT/parity.log" | tail -40
  parity_rc=${PIPESTATUS[0]}
fi

bench_rc=0
if [[ "${SKIP_BENCH:-0}" != 1 ]]; then
  echo "== benchmarks"
  timeout ${BENCH_TIMEOUT:-480} python3 -m pytest bench -q -p no:cacheprovider --benchmark-only \
    --benchmark-json="$OUT/bench.json" --benchmark-group-by=group ${1:+-k "$1"} 2>&1 | tail -30
  bench_rc=${PIPESTATUS[0]}
  python3 bench/summarize.py "$OUT/bench.json" "$OUT/device.txt" > "$OUT/summary.md" && cat "$OUT/summary.md"
fi
echo "run_gpu: parity rc=$parity_rc bench rc=$bench_rc"
exit $(( parity_rc != 0 || bench_rc != 0 ))
