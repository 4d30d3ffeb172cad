#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: GPU parity tests, every benchmark, the whole-model stage breakdown, the kernel
# ablation, the online frame and a training step as CUDA graphs and the readout's parts; writes Markdown/JSON/PNG
# to $OUT.
#
#   bash bench/run_gpu.sh [pytest -k expression for the benchmarks]
#
# Environment: PARITY_TESTS (test files to run natively), PARITY_TIMEOUT / BENCH_TIMEOUT / BREAKDOWN_TIMEOUT /
# ABLATION_TIMEOUT / GRAPH_TIMEOUT / LOOP_TIMEOUT (seconds), LOOP_STEPS (steps of each loop run),
# PGOCC_BENCH_ROUNDS (timed rounds per benchmark), ABLATION_VARIANTS (bench/ablation.py's --variants, in the order
# run), SKIP_PARITY=1 / SKIP_BENCH=1 / SKIP_BREAKDOWN=1 / SKIP_ABLATION=1 / SKIP_GRAPH=1 / SKIP_LOOP=1 to split the
# work over calls where one call is limited, BREAKDOWN_PRECISION (fp32,
# bf16 or both, the default), E2E_WORKERS (loader processes of the breakdown's end-to-end rows; default
# data.num_workers, at most 4; 8 gave 46.4 ms per bf16 frame on an H100 at 2fb8a97, bench/RESULTS.md).
# Durations on an H100: parity ≈ 6 min (gsplat's build included), benchmarks ≈ 8 min (capped by BENCH_TIMEOUT),
# breakdown ≈ 3 min (bench/breakdown.py; the 12-keyframe 1600×900 world of its end-to-end figure takes ≈ 20 s to
# generate), ablation 3.4 min (bench/ablation.py, 2026-12-07; its last row, gsplat, built gsplat's CUDA extension in
# 62 s), CUDA graphs about 2 min for the online frames and the training step (bench/cuda_graph.py) and the
# readout's parts (bench/readout_parts.py), the loop part not yet timed (its world: 2 scenes of 12 keyframes took
# 47.7 s to write on an H100 machine; it writes 1; then two 40-step runs of pgocc train, LOOP_TIMEOUT each): more
# than one call allows, so split it, e.g.
#   (1) SKIP_BENCH=1 SKIP_BREAKDOWN=1 SKIP_ABLATION=1 bash bench/run_gpu.sh                        parity, ≈ 6 min
#   (2) SKIP_PARITY=1 SKIP_BREAKDOWN=1 SKIP_ABLATION=1 bash bench/run_gpu.sh                   benchmarks, ≈ 8 min
#   (3) SKIP_PARITY=1 bash bench/run_gpu.sh test_model    issue 18: whole-model benchmarks, breakdown, ablation, ≈ 9 min
#   (4) SKIP_BENCH=1 SKIP_ABLATION=1 BREAKDOWN_PRECISION=bf16 PARITY_TESTS="tests/test_online.py
#       tests/test_feature_cache.py tests/test_infer.py::test_cuda_graph_replays_give_the_eager_online_labels
#       tests/test_train.py" bash bench/run_gpu.sh         issue 18 in one call: the graph-replay tests, the bf16
#       breakdown with its end-to-end rows (eager and --cuda-graph), the frame and step as CUDA graphs
#   (5) SKIP_BENCH=1 SKIP_BREAKDOWN=1 SKIP_ABLATION=1 PARITY_TESTS=tests/test_train_graph.py bash bench/run_gpu.sh
#       train.cuda_graph: its GPU tests, bench/cuda_graph.py, and the loop part (pgocc train eager and graphed)
# The breakdown and ablation scripts write their reports after every run, so a call cut short keeps what it measured.
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
PARITY_TESTS=${PARITY_TESTS:-"tests/test_aniso_sample*.py tests/test_st_fusion*.py tests/test_gs_raster*.py tests/test_gs2vox*.py tests/test_fps*.py tests/test_dist_attention*.py tests/test_model_parity.py tests/test_model.py tests/test_model_checks.py tests/test_train.py tests/test_train_graph.py tests/test_online.py tests/test_feature_cache.py tests/test_infer.py::test_cuda_graph_replays_give_the_eager_online_labels"}
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
breakdown_rc=0
if [[ "${SKIP_BREAKDOWN:-0}" != 1 ]]; then
  echo "== breakdown (issue 18: stages vs floors, launches and syncs, end to end over a 1600x900 world)"
  world=/tmp/pgocc-e2e-world
  [[ -d $world ]] || python3 -m pgocc make-synthetic --out "$world" --scenes 1 --keyframes 12 --sweeps 0 \
    --width 1600 --height 900 --text-encoder hash --jobs "$(nproc)" 2>&1 | tail -1
  # shellcheck disable=SC2086
  timeout ${BREAKDOWN_TIMEOUT:-300} python3 bench/breakdown.py --out "$OUT" --world "$world" \
    --precision ${BREAKDOWN_PRECISION:-fp32 bf16} ${E2E_WORKERS:+--set data.num_workers=$E2E_WORKERS} 2>&1 | tail -80
  breakdown_rc=${PIPESTATUS[0]}
fi

ablation_rc=0
if [[ "${SKIP_ABLATION:-0}" != 1 ]]; then
  echo "== kernel ablation (issue 18)"
  # ABLATION_VARIANTS orders the rows (each is written as it ends, so a call cut short keeps the first ones).
  timeout ${ABLATION_TIMEOUT:-420} python3 bench/ablation.py --out "$OUT" ${ABLATION_VARIANTS:+--variants "$ABLATION_VARIANTS"} \
    2>&1 | tail -30
  ablation_rc=${PIPESTATUS[0]}
fi
graph_rc=0
if [[ "${SKIP_GRAPH:-0}" != 1 ]]; then
  echo "== online frame and training step as CUDA graphs (issue 18)"
  timeout ${GRAPH_TIMEOUT:-180} python3 bench/cuda_graph.py --out "$OUT" 2>&1 | tail -12
  graph_rc=${PIPESTATUS[0]}
  echo "== the readout's parts and label merges (issue 18)"
  timeout ${GRAPH_TIMEOUT:-180} python3 bench/readout_parts.py 2>&1 | tee "$OUT/readout_parts.md" | tail -12
  (( graph_rc |= PIPESTATUS[0] ))
fi
loop_rc=0
if [[ "${SKIP_LOOP:-0}" != 1 ]]; then
  # model.ov_dims=384: the synthetic world's feature width (MiniLM-sized hash embeddings; MaskCLIP's is 512).
  echo "== the training loop, eager and with train.cuda_graph (issue 18)"
  world=/tmp/pgocc-train-world
  [[ -d $world ]] || python3 -m pgocc make-synthetic --out "$world" --scenes 1 --keyframes 12 --width 1600 \
    --height 900 --text-encoder hash --jobs "$(nproc)" 2>&1 | tail -1
  runs=()
  for graph in false true; do
    timeout ${LOOP_TIMEOUT:-150} python3 -m pgocc train --config configs.base:base --dataroot "$world" \
      --out "/tmp/pgocc-loop-$graph" --set train.num_steps=${LOOP_STEPS:-40} --set train.log_every=10 \
      --set train.val_samples=0 --set train.checkpoint_every=0 --set train.autocast=bf16 \
      --set train.cuda_graph=$graph --set model.ov_dims=384 2>&1 | tail -2
    (( loop_rc |= PIPESTATUS[0] ))
    runs+=("$([[ $graph == true ]] && echo graphed || echo eager), bf16=/tmp/pgocc-loop-$graph")
  done
  python3 bench/loop_times.py "${runs[@]}" | tee "$OUT/loop_times.md"
fi
echo "run_gpu: parity rc=$parity_rc bench rc=$bench_rc breakdown rc=$breakdown_rc ablation rc=$ablation_rc graph rc=$graph_rc loop rc=$loop_rc"
exit $(( parity_rc != 0 || bench_rc != 0 || breakdown_rc != 0 || ablation_rc != 0 || graph_rc != 0 || loop_rc != 0 ))
