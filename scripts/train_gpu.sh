#!/bin/bash
# One GPU lease (MODEL_CARD.md, "GPU training"): two 7-family scratch-stage runs side by side for TRAIN_S
# seconds, 16 crops of 256² per step, EMA 0.999, a validation model every VAL steps; then the last ones as
# tars in $OUT. PLAN picks the pair:
#   session16  the session-9 model (INIT) continued at lr 1e-4 | V2 from random weights at lr 4e-4
#   session17  session 16's continuation (INIT) at lr 5e-5, with MIX | the same with LITE (less haze,
#              camera and photoshop rain, whose global brightening taught the model to darken real rain)
# The leases carried JPEG (q 96) copies of the training photos (CLEAN=<them> HOLDOUT=0) and a 42-pair subset
# of the suite (VAL_DIR): every 5th pair of each family, 6 per family.
#   PLAN=session17 INIT=<model dir> TRAIN_S=540 bash scripts/train_gpu.sh
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
TRAIN_S=${TRAIN_S:-500}; WORKERS=${WORKERS:-7}; BATCH=${BATCH:-16}; CROP=${CROP:-256}; VAL=${VAL:-500}
OUT=${OUT:-/tmp/out}; mkdir -p $OUT runs
CLEAN=${CLEAN:-../shared/data/clean}; INIT=${INIT:-derain/assets/default_model}; PLAN=${PLAN:-session17}
MIX='{light: 0.22, heavy: 0.13, photoshop: 0.13, haze: 0.03, camera: 0.05, dense: 0.12, none: 0.32}'
LITE='{light: 0.30, heavy: 0.18, photoshop: 0.06, haze: 0.01, camera: 0.02, dense: 0.12, none: 0.31}'
common=(--stages scratch --resume --set deterministic=false --set data.holdout=${HOLDOUT:-0.15}
  --set data.synth.clean=$CLEAN --set data.val=${VAL_DIR:-results/suite-data} --set data.workers=$WORKERS
  --set data.synth.negatives=4 --set data.synth.samples_per_epoch=400000
  --set model.darken_only=true --set stages.scratch.iters=1000000 --set stages.scratch.batch_size=$BATCH
  --set stages.scratch.crop=$CROP --set stages.scratch.val_every=$VAL --set stages.scratch.keep_val_models=true
  --set stages.scratch.checkpoint_every=100000 --set stages.scratch.plateau_every=500
  --set stages.scratch.plateau_patience=2 --set stages.scratch.ema=0.999 --set stages.scratch.log_every=100)
train() {  # NAME SEED MIX [--set ...]
  local name=$1 seed=$2 mix=$3; shift 3
  timeout $TRAIN_S python3 -m derain train configs/mix.yaml --out runs/gpu-$name "${common[@]}" --set seed=$seed \
    --set "data.synth.families=$mix" "$@" > runs/gpu-$name.log 2>&1 &
}
case $PLAN in
  session16) runs="cont v2"
    train cont 7 "$MIX" --set stages.scratch.init=$INIT --set stages.scratch.lr=1e-4 --set model.shrink=0.0235
    train v2 8 "$MIX" --set stages.scratch.lr=4e-4 ;;
  session17) runs="cont2 lite"
    train cont2 9 "$MIX" --set stages.scratch.init=$INIT --set stages.scratch.lr=5e-5 --set model.shrink=0.0235
    train lite 10 "$LITE" --set stages.scratch.init=$INIT --set stages.scratch.lr=5e-5 --set model.shrink=0.0235 ;;
  *) echo "PLAN=$PLAN: expected session16 or session17" >&2; exit 2 ;;
esac
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null; uptime
wait
for r in $runs; do
  d=runs/gpu-$r/scratch
  ls $d
  vals=$(ls -d $d/val-* 2>/dev/null | tail -4)
  tar cf $OUT/gpu-$r.tar runs/gpu-$r.log runs/gpu-$r/metrics.jsonl $d/best $vals 2>/dev/null
  grep -v "^\s*$" runs/gpu-$r.log | tr '\r' '\n' | grep -v "it/s\]$" | tail -15
done
ls -la $OUT
