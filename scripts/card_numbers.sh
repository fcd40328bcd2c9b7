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
# realval: the 27 held-out photos with streaks harvested from the 15 choice photos (docs/datasets.md, "Real rain, harvested")
derain synth results/suite-data/clean --n 27 -o results/realval-data --model mix --families real=1 --seed 0 --no-progress \
  --bank $(awk -F, '$2=="choice"{print "'"$data"'/real_rain/sirr100/"$1}' scripts/sirr100_split.csv) > /dev/null
gallery_models=()
for item in "$@"; do
  name=${item%%=*}; model=${item#*=}
  gallery_models+=(--model "$item")
  echo "== $name ($model)"
  derain suite --model "$model" --out "$out/suite-$name" | tail -n +1
  derain eval --model "$model" --data "$data/paired/ddn_sirr_test20" --out "$out/ddn-$name" | grep -E "psnr|ssim|worse"
  derain eval --model "$model" --rainy /tmp/sirr30 --out "$out/niqe-$name" | grep niqe
  derain eval --model "$model" --data results/realval-data --out "$out/realval-$name" | grep -E "psnr|worse"
  python scripts/real_rain_report.py --model "$model" --split choice | tail -1
  python scripts/real_rain_report.py --model "$model" --split report | tail -3
done
derain eval --rainy /tmp/sirr30 --out "$out/niqe-input" | grep niqe
derain gallery "$data/real_rain/sirr100" --n 8 --crop 320 --diff "${gallery_models[@]}" -o "$out/gallery-crops" | tail -2
