#!/usr/bin/env bash
# Train configs/mix.yaml on a lent GPU machine for at most SECONDS in all, from the repo root:
#
#   bash scripts/device_train.sh v2 570     # V2: --stages scratch   (v1: recog recon distill finetune)
#
# Needs .device-data/ from scripts/device_pack.py (device tool: carry [".device-data"], timeout_s 600).
# Resumes runs/gpu-<name>, else .device-data/gpu-<name>.tar.gz when there. Leaves in $OUT:
# gpu-<name>.tar.gz (the resumable run, scripts/carry_run.py), metrics.jsonl, best/ (the best validation
# model), train.log. A signal saves nothing, so checkpoints come every 100 iterations.
# Env: OUT (required), RUNS [runs], WORKERS [12], PYTHON [python3], EXTRA_SET (more KEY=VALUE overrides,
# space-separated). The run refuses a changed config: pass the same WORKERS and EXTRA_SET to resume it.
set -uo pipefail
usage="usage: OUT=DIR bash scripts/device_train.sh v1|v2 SECONDS"
name=${1:?$usage} budget=${2:?$usage}
: "${OUT:?$usage}"
case $name in
  v2) stages=(scratch) best=scratch/best ;;
  v1) stages=(recog recon distill finetune) best=finetune/best ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
py=${PYTHON:-python3}
run=${RUNS:-runs}/gpu-$name
data=/tmp/derain-device  # one absolute path everywhere: config.yaml keeps it, and a resume must match
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$OUT" "$data"

# the data at $data, the validation suite built once from its held-out photos, the carried run
rm -rf "$data/clean" "$data/real_rain" && cp -r .device-data/clean .device-data/real_rain "$data/" || exit 1
$py -m derain suite --model none --clean "$data/clean" --dir "$data/suite" --out "$data/suite-none" || exit 1
if [ ! -d "$run" ] && [ -f ".device-data/gpu-$name.tar.gz" ]; then
  $py scripts/carry_run.py unpack ".device-data/gpu-$name.tar.gz" "$run" || exit 1
fi

steps() {  # {stage: last checkpoint step}
  $py -c 'import json, sys, pathlib
run = pathlib.Path(sys.argv[1])
print(json.dumps({s: json.loads(f.read_text())["step"] if (f := run / s / "latest.json").is_file() else 0
                  for s in sys.argv[2:]}))' "$run" "${stages[@]}"
}
read -ra extra <<< "${EXTRA_SET:-}"
sets=("data.real_clear=[$data/clean/*]" "data.real_rainy=[$data/real_rain/sirr100]" "data.synth.clean=$data/clean"
      "data.val=$data/suite" "data.workers=${WORKERS:-12}" "train.checkpoint_every=100" "${extra[@]}")
args=(); for s in "${sets[@]}"; do args+=(--set "$s"); done
start=$(steps)
left=$((budget - SECONDS - 20))  # 20 s to stop, pack and copy
[ "$left" -ge 10 ] || { echo "device_train.sh: only $left s left for training" >&2; exit 1; }
echo "training $name (${stages[*]}) for $left s from checkpoints $start"
t0=$SECONDS
timeout --signal=INT --kill-after=10 "$left" $py -m derain train configs/mix.yaml --out "$run" \
  --stages "${stages[@]}" --resume "${args[@]}" 2>&1 | tee "$OUT/train.log"
rc=${PIPESTATUS[0]} wall=$((SECONDS - t0))

$py scripts/carry_run.py pack "$run" "$OUT/gpu-$name.tar.gz"
cp "$run/metrics.jsonl" "$OUT/" 2>/dev/null
[ -d "$run/$best" ] && mkdir -p "$OUT/best" && cp "$run/$best/config.json" "$run/$best/model.safetensors" "$OUT/best/"
$py - "$run" "$start" "$(steps)" "$wall" <<'EOF'
import json, sys
from pathlib import Path
import torch
print("torch", torch.__version__, "on", torch.cuda.get_device_name() if torch.cuda.is_available() else "the CPU")
run, start, end, wall = Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
metrics = run / "metrics.jsonl"
rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
for stage in start:
    speeds = [r["it_s"] for r in rows if r["stage"] == stage and "it_s" in r and r["step"] > start[stage]]
    speeds = speeds[1:] or speeds  # the first window holds the start-up
    rate = f"{sum(speeds) / len(speeds):.2f} it/s (mean of {len(speeds)} log windows)" if speeds else "no log window"
    print(f"{stage}: checkpoint step {start[stage]} -> {end[stage]}, {rate}")
done = sum(end.values()) - sum(start.values())
print(f"throughput: {done} checkpointed iterations in {wall} s of training = {done / max(wall, 1):.2f} it/s overall")
EOF
ls -l "$OUT" "$OUT/best" 2>/dev/null
echo "derain train exit status $rc (124: stopped at the time limit)"
[ "$rc" = 0 ] || [ "$rc" = 124 ]
