#!/usr/bin/env bash
# Every number of MODEL_CARD.md's results for the candidate models, into results/card/ (about 10 min per
# model on 2 CPU cores). Usage, from the repo root with derain installed and ../shared/data present:
#   scripts/card_numbers.sh V1r=runs/v1r/finetune/best V2=runs/v2/scratch/best [NAME=MODEL ...]
set -euo pipefail
out=results/card
mkdir -p "$out" /tmp/sirr30
data=../shared/data
ls "$data/real_rain/sirr100" | sort | head -30 | while read -r f; do ln -sf "$(realpath "$data/real_rain/sirr100/$f")" /tmp/sirr30/; done
derain suite --model none --out "$out/suite-input" > /dev/null
gallery_models=()
for item in "$@"; do
  name=${item%%=*}; model=${item#*=}
  gallery_models+=(--model "$item")
  echo "== $name ($model)"
  derain suite --model "$model" --out "$out/suite-$name" | tail -n +1
  derain eval --model "$model" --data "$data/paired/ddn_sirr_test20" --out "$out/ddn-$name" | grep -E "psnr|ssim|worse"
  derain eval --model "$model" --rainy /tmp/sirr30 --out "$out/niqe-$name" | grep niqe
  python scripts/real_rain_report.py --model "$model" --rainy /tmp/sirr30 --n 30 | tail -1
  python scripts/real_rain_report.py --model "$model" --split report | tail -3
done
derain eval --rainy /tmp/sirr30 --out "$out/niqe-input" | grep niqe
derain gallery "$data/real_rain/sirr100" --n 8 --crop 320 --diff "${gallery_models[@]}" -o "$out/gallery-crops" | tail -2
