"""The Table 3 ablation as one markdown table, from the scores `scripts/ablation_table3.sh` writes.

    python scripts/table3_report.py runs/table3                      # one run of the ablation
    python scripts/table3_report.py runs/table3f runs/table3f-s1     # several seeds: mean, then each seed

Reads OUT/scores/suite-VARIANT/summary.json (`derain suite`) and OUT/scores/ddn-VARIANT/summary.json
(`derain eval`) for each variant present in every OUT. Suite gains in dB per rain family; "all rain" with
the share of rainy images made worse; clean photos as Y-PSNR against themselves with the brightness shift;
`ddn_sirr_test20` Y-PSNR / SSIM with the images made worse (reported, never used for a choice).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

VARIANTS = {"recog+recon": "both teachers (V1)", "recog": "T_recog only",
            "recon": "T_recon only", "v2": "V2, no teachers"}
FAMILIES = ("light", "heavy", "photoshop", "haze", "camera")
HEADER = ("| variant | " + " | ".join(FAMILIES) + " | all rain (worse) | clean photos (shift) | ddn_sirr_test20 (worse) |\n"
          "|---|" + "---|" * (len(FAMILIES) + 3))


def variants(out: Path) -> list[str]:
    names = {p.name.removeprefix("suite-") for p in (out / "scores").glob("suite-*")}
    return [v for v in VARIANTS if v in names and (out / "scores" / f"ddn-{v}" / "summary.json").is_file()]


def scores(out: Path, variant: str) -> dict[str, float]:
    suite = json.loads((out / "scores" / f"suite-{variant}" / "summary.json").read_text())["families"]
    ddn = json.loads((out / "scores" / f"ddn-{variant}" / "summary.json").read_text())
    row = {f: suite[f]["gain"] for f in FAMILIES}
    row.update(rain=suite["rain (all)"]["gain"], rain_worse=100 * suite["rain (all)"]["worse_share"],
               clean=suite["none"]["psnr"], clean_shift=suite["none"]["brightness_shift"],
               ddn_psnr=ddn["mean"]["psnr"], ddn_ssim=ddn["mean"]["ssim"], ddn_worse=ddn["worse_than_input"],
               ddn_images=ddn["images"])
    return row


def markdown_row(name: str, r: dict[str, float]) -> str:
    gains = " | ".join(f"{r[f]:+.2f}" for f in FAMILIES)
    return (f"| {name} | {gains} | {r['rain']:+.2f} ({r['rain_worse']:.0f}%) | {r['clean']:.2f} ({r['clean_shift']:+.2f}) "
            f"| {r['ddn_psnr']:.2f} / {r['ddn_ssim']:.4f} ({r['ddn_worse']:g} of {r['ddn_images']:g}) |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outs", nargs="+", type=Path, help="output folders of scripts/ablation_table3.sh")
    args = parser.parse_args(argv)
    found = [variants(o) for o in args.outs]
    common = [v for v in found[0] if all(v in f for f in found[1:])]
    if not common:
        print(f"table3_report: no variant has suite and ddn scores in every one of {[str(o) for o in args.outs]}",
              file=sys.stderr)
        return 1
    table = {o: {v: scores(o, v) for v in common} for o in args.outs}
    print(HEADER)
    for v in common:
        rows = [table[o][v] for o in args.outs]
        label = VARIANTS[v] + (f", mean of {len(rows)}" if len(rows) > 1 else "")
        print(markdown_row(label, {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}))
    if len(args.outs) > 1:
        for o in args.outs:
            for v in common:
                print(markdown_row(f"{VARIANTS[v]}, {o.name}", table[o][v]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
