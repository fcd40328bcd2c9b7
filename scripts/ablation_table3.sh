#!/usr/bin/env bash
# The Table 3 ablation (paper Sec. 4) at a small budget: TTL with both teachers (V1), with T_recog only, with
# T_recon only, and V2 (no teachers), each fine-tuned for the same iterations on the same rain, then scored
# on the validation suite and on ddn_sirr_test20. The teachers are trained once and shared. From the repo
# root, with ../shared/data and the suite (`derain suite --model none`). About 90 minutes on 2 CPU cores at
# the defaults; every stage resumes where it stopped, and teachers already in OUT/teachers are reused. Ends
# by printing the table (scripts/table3_report.py; give it several OUTs, one per seed, for their mean).
#   bash scripts/ablation_table3.sh [OUT] [FINETUNE_ITERS] [CROP] [SEED]     # defaults: runs/table3 1000 96 0
set -euo pipefail
out=${1:-runs/table3}; iters=${2:-1000}; crop=${3:-96}; seed=${4:-0}
budget=(--set seed=$seed --set stages.finetune.iters=$iters --set stages.finetune.crop=$crop --set stages.finetune.val_every=$iters
        --set stages.scratch.iters=$iters --set stages.scratch.crop=$crop --set stages.scratch.val_every=$iters)
derain train configs/mix.yaml --out "$out/teachers" --stages recog recon --resume "${budget[@]}"
for teachers in recog,recon recog recon; do
  run="$out/${teachers/,/+}"
  mkdir -p "$run" && cp -rn "$out/teachers/recog" "$out/teachers/recon" "$run/"
  derain train configs/mix.yaml --out "$run" --stages distill finetune --resume "${budget[@]}" \
    --set "stages.distill.teachers=[$teachers]"
done
derain train configs/mix.yaml --out "$out/v2" --stages scratch --resume "${budget[@]}"
for model in "$out/recog+recon/model" "$out/recog/model" "$out/recon/model" "$out/v2/scratch_model"; do
  name=$(basename "$(dirname "$model")")
  derain suite --model "$model" --out "$out/scores/suite-$name"
  derain eval --model "$model" --data ../shared/data/paired/ddn_sirr_test20 --out "$out/scores/ddn-$name"
done
python scripts/table3_report.py "$out"
