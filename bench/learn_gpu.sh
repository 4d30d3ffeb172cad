#!/usr/bin/env bash
# The learning proof on one GPU (bench/RESULTS.md, "Learning proof"): write a training world and a held-out world
# (other seed), train configs.small:small in paper and released fidelity side by side with validation on the
# held-out world, then score on the held-out world the untrained model, the label-only baselines and both trained
# models (THRESHOLDS: the readout opacity thresholds scored; VAL_THRESHOLD: the one of the validation during
# training). Writes 7 files to $OUT: device.txt, log.txt, <fidelity>.metrics.jsonl, paper.safetensors (the exported
# fp16 model, config embedded), baselines.json, heldout.json.
#
#   TEXT_TABLE=FILE STEPS=2000 TRAIN_SCENES=16 HELDOUT_SCENES=4 KEYFRAMES=8 TRAIN_TIMEOUT=1200 bash bench/learn_gpu.sh
#
# TRAIN_TIMEOUT (s) stops a training run that would not finish inside the device call; its curves still come back.
#
# TEXT_TABLE: the text_prototypes.npz of a world written where MiniLM is installed (the GPU image has no MiniLM;
# make-synthetic then embeds the prompts from that table, giving the same features).
set -uo pipefail
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
source bench/gpu_env.sh
TEXT_TABLE=${TEXT_TABLE:?set TEXT_TABLE to a world\'s text_prototypes.npz}
STEPS=${STEPS:-2000}
KEYFRAMES=${KEYFRAMES:-8}
W=/tmp/worlds
R=/tmp/runs
rm -rf "$W" "$R"; mkdir -p "$W" "$R"
start=$(date +%s)
python3 -m pgocc make-synthetic --out $W/train --seed 1 --scenes "${TRAIN_SCENES:-16}" --keyframes "$KEYFRAMES" \
  --text-encoder "$TEXT_TABLE" --jobs 12 & pids=($!)
python3 -m pgocc make-synthetic --out $W/heldout --seed 2 --scenes "${HELDOUT_SCENES:-4}" --keyframes "$KEYFRAMES" \
  --text-encoder "$TEXT_TABLE" --jobs 4 & pids+=($!)
wait "${pids[@]}"  # (a bare wait would also wait for the tee of the log)
echo "learn_gpu: worlds written in $(( $(date +%s) - start )) s"

pids=()
for fidelity in paper released; do
  timeout "${TRAIN_TIMEOUT:-1200}" python3 -m pgocc train --config "${CONFIG:-configs.small:small}" --dataroot $W/train --set data.val_dataroot=$W/heldout \
    --set model.fidelity=$fidelity --set train.num_steps="$STEPS" --set data.num_workers=6 \
    --set model.opacity_threshold="${VAL_THRESHOLD:-0.3}" \
    --out $R/$fidelity --export-fp16 > $R/$fidelity.log 2>&1 & pids+=($!)
done
wait "${pids[@]}"
for fidelity in paper released; do
  tail -n 4 $R/$fidelity.log
  cp $R/$fidelity/metrics.jsonl "$OUT/$fidelity.metrics.jsonl"
  test -f $R/$fidelity/model.safetensors || echo "learn_gpu: $fidelity did not finish"
done
cp $R/paper/model.safetensors "$OUT/paper.safetensors"
echo "learn_gpu: trained in $(( $(date +%s) - start )) s"

python3 bench/learning_baselines.py --train-world $W/train --heldout-world $W/heldout > "$OUT/baselines.json"
# The readout's opacity threshold is calibrated on the training world and then applied to the held-out world: each
# trained model is scored on both at every threshold of THRESHOLDS.
INFER="--set data.val_split=all --pictures 0"
python3 -m pgocc infer --config "${CONFIG:-configs.small:small}" --dataroot $W/heldout $INFER --out $R/untrained
for fidelity in paper released; do
  for t in ${THRESHOLDS:-0.6 0.3 0.1}; do
    for world in train heldout; do
      python3 -m pgocc infer --checkpoint $R/$fidelity/model.safetensors --dataroot $W/$world $INFER \
        --num-samples "${SCORE_SAMPLES:-32}" --set model.opacity_threshold="$t" --out "$R/$world-$fidelity-$t"
    done
  done
done
python3 - "$R" > "$OUT/heldout.json" <<'PY'
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
print(json.dumps({p.parent.name: json.loads(p.read_text())["metrics"] for p in sorted(root.glob("*/summary.json"))},
                 indent=1))
PY
echo "learn_gpu: done in $(( $(date +%s) - start )) s"
