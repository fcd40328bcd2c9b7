#!/bin/bash
# One GPU lease (docs/model_history.md, "The GPU continuation" and "The GPU run lite"): two 7-family scratch-stage runs
# side by side for TRAIN_S seconds, 16 crops of 256² per step, EMA 0.999, validation on the whole suite every VAL
# steps; then the last validation models as tars in $OUT. PLAN picks the pair:
#   session16  INIT continued at lr 1e-4 | V2 from random weights at lr 4e-4, both on MIX
#   session17  INIT continued at lr 5e-5 on MIX (cont2) | the same on LITE (lite: less haze, camera and
#              photoshop rain, whose global brightening taught the model to darken real rain)
#   session18  INIT continued at lr 5e-5 on LITE with photoshop back at 0.13 (ps) | on LITE with dense doubled
#              to 0.24 (dense2). No GPU was lent: it ran on the CPU at 8 x 128² (docs/model_history.md, "The CPU
#              continuations ps and dense2"), and the mean of lite and both ships
#   session19  (proposed, dry-run on the CPU only) session 18's pair from the bundled weights at 64 crops of 128² per step:
#              on the CPU the 128² crops taught less veil removal and less darkening of real rain; at GPU scale?
#              No GPU was lent in session 19 either: the CPU ran ps at 8 x 128² and 2 x 256² instead (docs/model_history.md,
#              "The CPU continuations ps128 and ps256"); this plan is still the one for the next lease, with
#              SHRINK=0.0353: session 20 (CPU, docs/model_history.md, "The CPU continuations t128 and t256") trained the
#              bundled model through that 9-level threshold and ships it behind 11 levels
#   session21  INIT continued with the `real` family at 15% (r15) | 30% (r30) of crops, streaks harvested from
#              the 15 `bank` photos of scripts/sirr100_split.csv; ran on the CPU at 8 x 128² in session 21
#              (docs/model_history.md, "The real-rain family r15 and r30"), whose mean shipped behind 12 levels
#   session22  INIT continued with more of the `real` family: 30% with stronger, more widely rescaled streaks
#              (s22a) | 45% (s22b), the plateau measured over 1500 steps; ran on the CPU at 8 x 128² in session 22
#              (docs/model_history.md, "More of the real-rain family: s22a and s22b"), whose mean ships behind
#              12.5 levels
#   session25  INIT continued on s22a's mix through a threshold drawn per crop: shrink_jitter 0.5 (s25a) | 0.8
#              (s25b); s25a ran on the CPU at 8 x 128² in session 25 (docs/model_history.md, "A drawn threshold:
#              s25a"), whose mean ships behind 11.5 levels: the plan for the next lease, with SHRINK=0.0451 (that
#              threshold) and 16 x 256² crops
#   session26  INIT continued through the wider draw (shrink_jitter 0.8) on s22a's mix (s26a) | with more dense
#              and haze rain (s26b); ran on the CPU at 8 x 128² in session 26 (docs/model_history.md, "A wider
#              draw on two mixes: s26a and s26b"), whose mean shipped behind 10 levels: the plan for the next
#              lease, with SHRINK=0.049 (the centre those runs drew around) and 16 x 256² crops
#   session28  INIT continued on s26b's mix with detail-picked no-rain crops (data.synth.negatives=12), two seeds
#              (s28a | s28b); ran on the CPU at 8 x 128² in sessions 27-28 as s27c and s28d (docs/model_history.md,
#              "Line-rich clean crops: s27c and s28d"), whose mean ships behind 11.25 levels: the plan for the next
#              lease, with SHRINK=0.049 and 16 x 256² crops
#   session33  session 28's pair continued through the threshold per pixel (stage key streak_map, 12.5 / 6.25
#              levels where the rain layer exceeds 2.5, the maps made in the data workers), two seeds (s33a | s33b);
#              ran on the CPU at 8 x 128² in sessions 32-33 as s32a/s32c and s33d/s33e (docs/model_history.md, "A
#              threshold per pixel", "Fainter streaks on the map"): the plan for the next lease, with SHRINK=0.049
#              and 16 x 256² crops
#   session36  session 33's pair with the `wind` family (rain 35-70 degrees off the vertical) in the mix, 8% (s36g) and
#              20% (s36h); on the CPU a 3000-step run with 8% lifted `wind` by 1.1 dB but cost 5 points of real streak
#              removal and 1 dB on clean photos (docs/model_history.md, "Rain blown off the vertical"): whether a
#              GPU's budget learns every angle without that trade. SHRINK=0.049, 16 x 256² crops
#   session38  session 33's pair with the `drizzle` family (short, faint dashes) at 8% (s38g, s38b's mix) and 16% (s38h);
#              on the CPU 4500 steps of s38b lifted `drizzle` by 1.1 dB but darkened real rain past the floor
#              (docs/model_history.md, "Fine rain, the `drizzle` family"). SHRINK=0.049, 16 x 256² crops
#   session43  m40 (INIT, the bundled model) continued on its own recipe (s38b's mix, the threshold map) at a GPU's budget
#              (s43g) | the same with rain_weight 0.5 (s43h). On the CPU every lever since session 40 slid along one
#              line between removal and darkening (docs/model_history.md, "The rain's pixels counted twice"): whether
#              16 x 256² crops for minutes move the line itself. SHRINK=0.049; a drawn task has 15 minutes of device
#              time, so TRAIN_S=420
#   session45  m40 continued on its own recipe (s45g, as s43g) | the same pushed both ways at once (s45h): no-rain crops
#              mined from m40's own mistakes (harmed_negatives 12, maps made on the device from the packed photos) with
#              the rain's pixels counted 1.5 times (rain_weight 0.5). On the CPU each lever alone slid along the line
#              (session 42: removal up, clean photos down; session 44: the reverse); a network that the budget sharpens
#              should keep both gains. SHRINK=0.049, TRAIN_S=420
#   session47  m40 deepened from 9 to 12 AGLF-ViT blocks (s47g: the 3 new blocks appended, started as the identity, so
#              it begins as m40, and trained at lr_added 5e-4, ten times the rest, as the paper's fresh D_dr) | m40
#              continued alike at its own depth (s47h, the control: s43g's recipe, a new seed). On the CPU every lever slid
#              along one line between removal and clean-photo harm (sessions 42-45): whether capacity, not only budget,
#              moves it. SHRINK=0.049, TRAIN_S=420 (12 blocks: about a third more time per step and per photo). On the CPU
#              the new blocks' alpha and beta stayed near 0 (s47a-c): an option, not the next lease's plan (session45)
#   session51  s50a's line continued (s51g: m40's encoder without the detail path, the `default` architecture, from
#              s51c's CPU step 12,000 in carry/s51c-step12000.tar.gz, on m40's recipe at lr 2e-4) | m40 continued on the same
#              recipe (s51h, s45g's control with a new seed). On the CPU s50a gained 0.5 dB on the six families per
#              1.8 G pixel-passes and was still 1.2 dB short of m40 at 3.9 G; s51c, at twice the lr, 0.95 dB short
#              at 5.5 G (its step 12,000; docs/model_history.md, "s50a to its end", "s51c"): whether a lease's ~4-5 G
#              closes the gap, which would ship the architecture that wins per second (0.63-0.71 x m40's time at
#              1 MP). SHRINK=0.049, TRAIN_S=420. Its carry file was replaced by session53's
#   session53  session51's plan from s53a's CPU step 25,500 (carry/s53a-step25500.tar.gz; s51c's step 12,000 continued
#              at lr 2e-4 for 25,500 more steps, 8.8 G pixel-passes in the line; docs/model_history.md, "s53a"): s53g
#              continues it at lr 2e-4 | s53h continues m40 (the control, a new seed). SHRINK=0.049, TRAIN_S=420
#              CPU dry run: PLAN=session19 TRAIN_S=60 BATCH=2 CROP=64 SMALL_BATCH=2 SMALL_CROP=64 WORKERS=1 VAL=1000000
#              OUT=/tmp/tgout DATA=/tmp/derain-dry bash scripts/train_gpu.sh
# INIT defaults to the bundled model (m40 since session 40: s38b's mean, which already learnt `drizzle`; plans before
# session 40 were written for m33, session 33's mean; session 17 started from session 16's continuation, session 16
# from the session-9 model).
# Data: .device-data from `python scripts/device_pack.py` (device tool: carry [".device-data"], timeout_s 600);
# the suite is built there from its held-out photos, as by scripts/device_train.sh.
#   PLAN=session17 TRAIN_S=540 bash scripts/train_gpu.sh
# AMP=false trains in fp32, 14% faster than bf16 in benchmarks/bench_train.py on an H200 (README, "Speed on one
# GPU"); sessions 16 and 17 ran with bf16 (AMP=true, the default).
# (Sessions 16 and 17 carried the same photos, JPEG q 96, and validated on a 42-pair subset of the suite.)
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
TRAIN_S=${TRAIN_S:-500}; WORKERS=${WORKERS:-7}; BATCH=${BATCH:-16}; CROP=${CROP:-256}; VAL=${VAL:-500}
OUT=${OUT:-/tmp/out}; INIT=${INIT:-derain/assets/default_model}; PLAN=${PLAN:-session17}
data=${DATA:-/tmp/derain-device}
case $PLAN in session1[6789]|session2[12568]|session3[368]|session4[357]|session5[13]) ;; *) echo "PLAN=$PLAN: expected session16 ... session19, session21, session22, session25, session26, session28, session33, session36, session38, session43, session45, session47, session51 or session53" >&2; exit 2 ;; esac
mkdir -p $OUT runs $data
rm -rf $data/clean && cp -r .device-data/clean $data/ || exit 1
python3 -m derain suite --model none --clean $data/clean --dir $data/suite --out $data/suite-none > /dev/null || exit 1
MIX='{light: 0.22, heavy: 0.13, photoshop: 0.13, haze: 0.03, camera: 0.05, dense: 0.12, none: 0.32}'
LITE='{light: 0.30, heavy: 0.18, photoshop: 0.06, haze: 0.01, camera: 0.02, dense: 0.12, none: 0.31}'
PS='{light: 0.27, heavy: 0.16, photoshop: 0.13, haze: 0.01, camera: 0.02, dense: 0.12, none: 0.29}'
R15='{light: 0.22, heavy: 0.13, photoshop: 0.12, haze: 0.01, camera: 0.02, dense: 0.06, real: 0.15, none: 0.29}'
R30='{light: 0.16, heavy: 0.10, photoshop: 0.10, haze: 0.01, camera: 0.02, dense: 0.02, real: 0.30, none: 0.29}'
R30D='{light: 0.12, heavy: 0.08, photoshop: 0.08, haze: 0.03, camera: 0.02, dense: 0.08, real: 0.30, none: 0.29}'
W08='{light: 0.08, heavy: 0.06, photoshop: 0.06, haze: 0.03, camera: 0.02, dense: 0.08, wind: 0.08, real: 0.30, none: 0.29}'
W20='{light: 0.05, heavy: 0.03, photoshop: 0.03, haze: 0.02, camera: 0.02, dense: 0.06, wind: 0.20, real: 0.30, none: 0.29}'
D08='{light: 0.09, heavy: 0.07, photoshop: 0.06, haze: 0.03, camera: 0.02, dense: 0.07, drizzle: 0.08, real: 0.30, none: 0.28}'
D16='{light: 0.07, heavy: 0.05, photoshop: 0.04, haze: 0.03, camera: 0.02, dense: 0.05, drizzle: 0.16, real: 0.30, none: 0.28}'
R45='{light: 0.10, heavy: 0.07, photoshop: 0.06, haze: 0.01, camera: 0.01, dense: 0.01, real: 0.45, none: 0.29}'
BANK="[$(awk -F, -v d="$PWD/.device-data/real_rain/sirr100" '$2=="bank"{printf "%s%s/%s", n++ ? ", " : "", d, $1}' scripts/sirr100_split.csv)]"
DENSE2='{light: 0.25, heavy: 0.15, photoshop: 0.05, haze: 0.01, camera: 0.02, dense: 0.24, none: 0.28}'
common=(--stages scratch --resume --set deterministic=false --set data.holdout=0.15 --set amp=${AMP:-true}
  --set data.synth.clean=$data/clean --set data.val=$data/suite --set data.workers=$WORKERS
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
cont=(--set stages.scratch.init=$INIT --set model.shrink=${SHRINK:-0.0235} --set stages.scratch.lr=5e-5)  # INIT continued
small=(--set stages.scratch.crop=${SMALL_CROP:-128} --set stages.scratch.batch_size=${SMALL_BATCH:-64})
real=("${cont[@]}" --set "data.synth.bank=$BANK")  # INIT continued with the `real` family's bank
slow=(--set stages.scratch.plateau_every=1500)  # the lr halves after 4500 steps without progress, not 1500
strong=(--set "data.synth.family_params={real: {gain: [1.0, 3.5], scale: [0.6, 1.6]}}")  # s22a's real streaks: stronger, more widely rescaled
case $PLAN in
  session16) runs="cont v2"
    train cont 7 "$MIX" "${cont[@]}" --set stages.scratch.lr=1e-4
    train v2 8 "$MIX" --set stages.scratch.lr=4e-4 ;;
  session17) runs="cont2 lite"
    train cont2 9 "$MIX" "${cont[@]}"
    train lite 10 "$LITE" "${cont[@]}" ;;
  session18) runs="ps dense2"
    train ps 11 "$PS" "${cont[@]}"
    train dense2 12 "$DENSE2" "${cont[@]}" ;;
  session19) runs="ps128 dense128"
    train ps128 13 "$PS" "${cont[@]}" "${small[@]}"
    train dense128 14 "$DENSE2" "${cont[@]}" "${small[@]}" ;;
  session21) runs="r15 r30"
    train r15 15 "$R15" "${real[@]}"
    train r30 16 "$R30" "${real[@]}" ;;
  session22) runs="s22a s22b"
    train s22a 17 "$R30" "${real[@]}" "${slow[@]}" "${strong[@]}"
    train s22b 18 "$R45" "${real[@]}" "${slow[@]}" ;;
  session25) runs="s25a s25b"
    train s25a 19 "$R30" "${real[@]}" "${slow[@]}" "${strong[@]}" --set stages.scratch.shrink_jitter=0.5
    train s25b 20 "$R30" "${real[@]}" "${slow[@]}" "${strong[@]}" --set stages.scratch.shrink_jitter=0.8 ;;
  session26) runs="s26a s26b"
    train s26a 21 "$R30" "${real[@]}" "${slow[@]}" "${strong[@]}" --set stages.scratch.shrink_jitter=0.8
    train s26b 22 "$R30D" "${real[@]}" "${slow[@]}" "${strong[@]}" --set stages.scratch.shrink_jitter=0.8 ;;
  session28) runs="s28a s28b"
    train s28a 23 "$R30D" "${real[@]}" "${slow[@]}" "${strong[@]}" --set stages.scratch.shrink_jitter=0.8 --set data.synth.negatives=12
    train s28b 24 "$R30D" "${real[@]}" "${slow[@]}" "${strong[@]}" --set stages.scratch.shrink_jitter=0.8 --set data.synth.negatives=12 ;;
  session33|session36|session38|session43|session45|session47|session5[13])
    mapped=(--set stages.scratch.shrink_jitter=0.8 --set data.synth.negatives=12 --set model.shrink_streaks=0.0245
      --set model.streak_level=2.5 --set stages.scratch.streak_map=true)
    if [ $PLAN = session33 ]; then
      runs="s33a s33b"
      train s33a 25 "$R30D" "${real[@]}" "${slow[@]}" "${strong[@]}" "${mapped[@]}"
      train s33b 26 "$R30D" "${real[@]}" "${slow[@]}" "${strong[@]}" "${mapped[@]}"
    elif [ $PLAN = session43 ]; then
      runs="s43g s43h"
      train s43g 31 "$D08" "${real[@]}" "${slow[@]}" "${strong[@]}" "${mapped[@]}"
      train s43h 32 "$D08" "${real[@]}" "${slow[@]}" "${strong[@]}" "${mapped[@]}" --set stages.scratch.rain_weight=0.5
    elif [ $PLAN = session45 ]; then
      runs="s45g s45h"
      python3 scripts/harm_maps.py --model $INIT --clean $data/clean --holdout 0.15 -o $data/harm.npz > runs/harm.log 2>&1 \
        || { tail -3 runs/harm.log; exit 1; }
      tail -1 runs/harm.log
      train s45g 33 "$D08" "${real[@]}" "${slow[@]}" "${strong[@]}" "${mapped[@]}"
      train s45h 34 "$D08" "${real[@]}" "${slow[@]}" "${strong[@]}" "${mapped[@]}" --set stages.scratch.rain_weight=0.5 \
        --set data.synth.negatives=1 --set data.synth.harm_maps=$data/harm.npz --set data.synth.harmed_negatives=12
    elif [ $PLAN = session47 ]; then
      runs="s47g s47h"
      train s47g 35 "$D08" "${real[@]}" "${slow[@]}" "${strong[@]}" "${mapped[@]}" --set model.depth=12 \
        --set stages.scratch.lr_added=5e-4
      train s47h 36 "$D08" "${real[@]}" "${slow[@]}" "${strong[@]}" "${mapped[@]}"
    elif [ $PLAN = session51 ] || [ $PLAN = session53 ]; then
      # the default-architecture line from a carried CPU model (g) beside m40 continued (h)
      if [ $PLAN = session51 ]; then n=s51; seed=37; carried=s51c-step12000; step=00012000
      else n=s53; seed=39; carried=s53a-step25500; step=00025500; fi
      runs="${n}g ${n}h"
      tar xzf carry/$carried.tar.gz -C $data || exit 1
      train ${n}g $seed "$D08" "${real[@]}" "${slow[@]}" "${strong[@]}" "${mapped[@]}" --set model.detail_dim=0 \
        --set stages.scratch.init=$data/val-$step --set stages.scratch.lr=2e-4
      train ${n}h $((seed + 1)) "$D08" "${real[@]}" "${slow[@]}" "${strong[@]}" "${mapped[@]}"
    elif [ $PLAN = session38 ]; then
      runs="s38g s38h"
      train s38g 29 "$D08" "${real[@]}" "${slow[@]}" "${strong[@]}" "${mapped[@]}"
      train s38h 30 "$D16" "${real[@]}" "${slow[@]}" "${strong[@]}" "${mapped[@]}"
    else
      runs="s36g s36h"
      train s36g 27 "$W08" "${real[@]}" "${slow[@]}" "${strong[@]}" "${mapped[@]}"
      train s36h 28 "$W20" "${real[@]}" "${slow[@]}" "${strong[@]}" "${mapped[@]}"
    fi ;;
esac
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null; uptime
wait
for r in $runs; do
  d=runs/gpu-$r/scratch
  vals=$(ls -d $d/val-* 2>/dev/null | tail -4)
  tar cf $OUT/gpu-$r.tar runs/gpu-$r.log runs/gpu-$r/metrics.jsonl $d/best $vals 2>/dev/null
  grep -v "^\s*$" runs/gpu-$r.log | tr '\r' '\n' | grep -v "it/s\]$" | tail -15
done
ls -la $OUT
