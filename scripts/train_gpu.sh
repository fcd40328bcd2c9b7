#!/bin/bash
# The session-16 GPU runs (MODEL_CARD.md, "The GPU continuation"): on one GPU, two 7-family runs side by side for
# TRAIN_S seconds (the bundled model continued at lr 1e-4; V2 from random weights at 4e-4), 16 crops of 256² per
# step, EMA 0.999, a validation model every VAL steps; then the last ones as tars in $OUT.
# The lease carried JPEG (q 96) copies of the training photos: CLEAN=<them> RAINY=<them> (unused by these
# runs, but the config checks it) HOLDOUT=0 VAL_DIR=<a 42-pair subset>.
#   TRAIN_S=490 bash scripts/train_gpu.sh
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
TRAIN_S=${TRAIN_S:-500}; WORKERS=${WORKERS:-7}; BATCH=${BATCH:-16}; CROP=${CROP:-256}; VAL=${VAL:-500}
OUT=${OUT:-/tmp/out}; mkdir -p $OUT runs
CLEAN=${CLEAN:-../shared/data/clean}; RAINY=${RAINY:-../shared/data/real_rain/sirr100}
MIX='{light: 0.22, heavy: 0.13, photoshop: 0.13, haze: 0.03, camera: 0.05, dense: 0.12, none: 0.32}'
common=(--stages scratch --resume --set "data.real_rainy=[$RAINY]" --set "data.real_clear=[$CLEAN/*]" --set deterministic=false --set data.holdout=${HOLDOUT:-0.15}
  --set data.synth.clean=$CLEAN --set data.val=${VAL_DIR:-results/suite-data} --set data.workers=$WORKERS
  --set "data.synth.families=$MIX" --set data.synth.negatives=4 --set data.synth.samples_per_epoch=400000
  --set model.darken_only=true --set stages.scratch.iters=1000000 --set stages.scratch.batch_size=$BATCH
  --set stages.scratch.crop=$CROP --set stages.scratch.val_every=$VAL --set stages.scratch.keep_val_models=true
  --set stages.scratch.checkpoint_every=100000 --set stages.scratch.plateau_every=500
  --set stages.scratch.plateau_patience=2 --set stages.scratch.ema=0.999 --set stages.scratch.log_every=100)
timeout $TRAIN_S python3 -m derain train configs/mix.yaml --out runs/gpu-cont "${common[@]}" --set seed=7 \
  --set stages.scratch.init=derain/assets/default_model --set stages.scratch.lr=1e-4 --set model.shrink=0.0235 \
  > runs/gpu-cont.log 2>&1 &
timeout $TRAIN_S python3 -m derain train configs/mix.yaml --out runs/gpu-v2 "${common[@]}" --set seed=8 \
  --set stages.scratch.lr=4e-4 > runs/gpu-v2.log 2>&1 &
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null; uptime
wait
for r in cont v2; do
  d=runs/gpu-$r/scratch
  ls $d
  vals=$(ls -d $d/val-* 2>/dev/null | tail -4)
  tar cf $OUT/gpu-$r.tar runs/gpu-$r.log runs/gpu-$r/metrics.jsonl $d/best $vals 2>/dev/null
  grep -v "^\s*$" runs/gpu-$r.log | tr '\r' '\n' | grep -v "it/s\]$" | tail -15
done
ls -la $OUT
