#!/usr/bin/env bash
# One candidate through the choice, and nothing the choice may not see (no ddn_sirr_test20, no report photos):
# the mean of MODEL dirs behind a soft threshold of LEVELS grey levels (darken-only; LEVELS as T/S: S on the input's
# own rain streaks and T elsewhere, the model config's shrink_streaks and shrink), then the validation suite,
# realval and the 15 choice photos of real rain. The rule that picks among candidates: docs/model_history.md,
# "The real-rain family r15 and r30". Usage, from the repo root with derain installed and the suite and realval
# built (docs/datasets.md):
#   scripts/candidate.sh NAME LEVELS MODEL [MODEL ...]    # writes runs/NAME, results/suite-NAME, results/realval-NAME
#   scripts/candidate.sh NAME 14/7 MODEL [MODEL ...]      # 14 levels, and 7 on the streaks
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: scripts/candidate.sh NAME LEVELS MODEL [MODEL ...]" >&2
  exit 2
fi
name=$1; levels=$2; shift 2
read -r shrink streaks < <(python -c "import sys; t, s = (sys.argv[1] + '/0').split('/')[:2]; print(f'{float(t) / 255:.4f} {float(s) / 255:.4f}')" "$levels")
python scripts/average_models.py "runs/$name" "$@" --darken-only --shrink "$shrink" --shrink-streaks "$streaks" > /dev/null
echo "== $name: mean of $# behind $levels levels (--shrink $shrink --shrink-streaks $streaks)"
derain suite --model "runs/$name" --out "results/suite-$name" | grep -E '^\|'
derain eval --model "runs/$name" --data results/realval-data --out "results/realval-$name" | grep -E 'psnr|shift|worse'
python scripts/real_rain_report.py --model "runs/$name" --split choice | tail -n 1
