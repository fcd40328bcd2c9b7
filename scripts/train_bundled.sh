#!/usr/bin/env bash
# The bundled model's recipe after V2's 12,000 iterations (MODEL_CARD.md, "Training"): three continuations of
# V2's step-10,000 weights with rebalanced rain (A, B, then C from the mean of A and B's validation models),
# then the mean of C's last two validation models, capped so no pixel brightens (--darken-only), continued
# by D and E through a soft threshold on the residual (model key shrink: 2, then 4 grey levels) and G (less
# veil), each averaged, then the mean of G and five runs like it (G1, H, I, K, L: other seeds, starts, mixes
# or streaks), shipped through a 6-level threshold (session 9). A and B took about 60 minutes on 2 AVX-512
# CPU cores, C 37, D to L 25 each on 2 AVX2 cores (about 6 h in all);
# from the repo root, with ../shared/data and the suite (`derain suite --model none`).
#   bash scripts/train_bundled.sh [OUT_MODEL_DIR]      # default: runs/bundled
set -euo pipefail
out=${1:-runs/bundled}
v2=runs/v2-step10000  # the model bundled before (commit cdf070a): V2 of configs/mix.yaml at step 10,000
mkdir -p "$v2"
for f in config.json model.safetensors; do git show "cdf070a:derain/assets/default_model/$f" > "$v2/$f"; done
# A: more no-rain crops, less veil; lr 1e-4; its weights at step 1500
derain train configs/mix.yaml --out runs/cont-a --stages scratch --resume \
  --set stages.scratch.init=$v2 --set stages.scratch.iters=1500 --set stages.scratch.lr=1e-4 \
  --set stages.scratch.val_every=500 \
  --set 'data.synth.families={light: 0.25, heavy: 0.15, photoshop: 0.15, haze: 0.03, camera: 0.07, none: 0.35}'
# B: from A; no-rain crops the most detailed of 4, a little more veil; its validations at 1500 and 2000 kept
derain train configs/mix.yaml --out runs/cont-b --stages scratch --resume \
  --set stages.scratch.init=runs/cont-a/scratch_model --set stages.scratch.iters=2000 \
  --set stages.scratch.lr=1e-4 --set stages.scratch.val_every=500 --set stages.scratch.keep_val_models=true \
  --set 'data.synth.families={light: 0.25, heavy: 0.15, photoshop: 0.15, haze: 0.06, camera: 0.09, none: 0.30}' \
  --set data.synth.negatives=4
python scripts/average_models.py runs/bundled-s3 runs/cont-a/scratch_model \
  runs/cont-b/scratch/val-00001500 runs/cont-b/scratch/val-00002000   # the model shipped in session 3
# C: from that mean; no-rain .32 as the most detailed of 4 crops, lr 5e-5; its validations at 1500 and 2000
derain train configs/mix.yaml --out runs/cont-c --stages scratch --resume \
  --set stages.scratch.init=runs/bundled-s3 --set stages.scratch.iters=2000 --set stages.scratch.lr=5e-5 \
  --set stages.scratch.val_every=500 --set stages.scratch.keep_val_models=true \
  --set 'data.synth.families={light: 0.25, heavy: 0.15, photoshop: 0.15, haze: 0.05, camera: 0.08, none: 0.32}' \
  --set data.synth.negatives=4
python scripts/average_models.py runs/bundled-s5 runs/cont-c/scratch/val-00001500 runs/cont-c/scratch/val-00002000 \
  --darken-only   # the model shipped in session 5
# D and E (session 7): C's data, trained through D_dr's soft threshold (2, then 4 grey levels); G (session 8):
# E's recipe with less veil in the mix. Each the mean of its last two validations
c_mix='{light: 0.25, heavy: 0.15, photoshop: 0.15, haze: 0.05, camera: 0.08, none: 0.32}'
g_mix='{light: 0.28, heavy: 0.17, photoshop: 0.15, haze: 0.03, camera: 0.05, none: 0.32}'
through_threshold() {  # RUN INIT SHRINK MIX [--set KEY=VALUE ...]
  derain train configs/mix.yaml --out "runs/$1" --stages scratch --resume \
    --set stages.scratch.init="$2" --set stages.scratch.iters=2000 --set stages.scratch.lr=5e-5 \
    --set stages.scratch.val_every=500 --set stages.scratch.keep_val_models=true \
    --set model.darken_only=true --set model.shrink="$3" --set "data.synth.families=$4" \
    --set data.synth.negatives=4 "${@:5}"
  python scripts/average_models.py "runs/$1-avg" "runs/$1/scratch/val-00001500" "runs/$1/scratch/val-00002000"
}
through_threshold cont-d runs/bundled-s5 0.0078 "$c_mix"
through_threshold cont-e runs/cont-d-avg 0.0157 "$c_mix"   # the model shipped in session 7
through_threshold cont-g runs/cont-e-avg 0.0157 "$g_mix"   # the model shipped in session 8
# Five more runs of session 8 (docs/model_history.md, "Runs D, E and G"): G1 another rain seed; H from G, seed 2;
# K from the mean of G and G1 with still less veil, seed 3; L from G through 6 levels, seed 4; I fainter,
# wider streaks
through_threshold cont-g1 runs/cont-e-avg 0.0157 "$g_mix" --set seed=1
python scripts/average_models.py runs/gg1-avg runs/cont-g/scratch/val-00001500 runs/cont-g/scratch/val-00002000 \
  runs/cont-g1/scratch/val-00001500 runs/cont-g1/scratch/val-00002000
through_threshold cont-h runs/cont-g-avg 0.0157 "$g_mix" --set seed=2
through_threshold cont-k runs/gg1-avg 0.0157 '{light: 0.29, heavy: 0.17, photoshop: 0.16, haze: 0.02, camera: 0.04, none: 0.32}' \
  --set seed=3
through_threshold cont-l runs/cont-g-avg 0.0235 "$g_mix" --set seed=4
through_threshold cont-i runs/cont-e-avg 0.0157 "$g_mix" \
  --set 'data.synth.family_params={light: {brightness: [0.15, 0.9]}, heavy: {brightness: [0.2, 1.0], width: [1.0, 4.0]}}'
# Session 9: the six runs' mean through a 6-level threshold (the model shipped)
python scripts/average_models.py runs/soup6t6 runs/cont-g-avg runs/cont-g1-avg runs/cont-h-avg runs/cont-i-avg \
  runs/cont-k-avg runs/cont-l-avg --darken-only --shrink 0.0235
mkdir -p "$out" && cp runs/soup6t6/config.json runs/soup6t6/model.safetensors "$out"
