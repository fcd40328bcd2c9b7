#!/usr/bin/env bash
# One candidate through the choice, and nothing the choice may not see (no ddn_sirr_test20, no report photos):
# the mean of MODEL dirs behind a soft threshold of LEVELS grey levels (darken-only; LEVELS as T/S: S on the input's
# own rain streaks and T elsewhere, the model config's shrink_streaks and shrink; as T/S/L: the streaks are where the
# input's rain layer exceeds L grey levels, its streak_level, 4 by default), then the validation suite,
# realval and the 15 choice photos of real rain. The rule that picks among candidates: docs/model_history.md,
# "The real-rain family r15 and r30". Usage, from the repo root with derain installed and the suite and realval
# built (docs/datasets.md):
#   scripts/candidate.sh NAME LEVELS MODEL [MODEL ...]    # writes runs/NAME, results/suite-NAME, results/realval-NAME
#   scripts/candidate.sh NAME 14/7 MODEL [MODEL ...]      # 14 levels, and 7 on the streaks
#   scripts/candidate.sh NAME 12.5/5/2.5 MODEL [MODEL ...]  # 12.5 levels, and 5 where the rain layer exceeds 2.5
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: scripts/candidate.sh NAME LEVELS MODEL [MODEL ...]" >&2
  exit 2
fi
name=$1; levels=$2; shift 2
read -r shrink streaks level < <(python -c "import sys; p = sys.argv[1].split('/'); t, s, l = p + ['0', '4'][len(p) - 1:]; print(f'{float(t) / 255:.4f} {float(s) / 255:.4f} {float(l):g}')" "$levels")
python scripts/average_models.py "runs/$name" "$@" --darken-only --shrink "$shrink" --shrink-streaks "$streaks" --streak-level "$level" > /dev/null
echo "== $name: mean of $# behind $levels levels (--shrink $shrink --shrink-streaks $streaks --streak-level $level)"
derain suite --model "runs/$name" --out "results/suite-$name" | grep -E '^\|'
derain eval --model "runs/$name" --data results/realval-data --out "results/realval-$name" | grep -E 'psnr|shift|worse'
python scripts/real_rain_report.py --model "runs/$name" --split choice | tail -n 1
