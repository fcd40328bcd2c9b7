"""Average the weights of several model directories of one architecture (checkpoint averaging, a
"model soup") into a new model directory.

    python scripts/average_models.py OUT MODEL [MODEL ...] [--darken-only] [--shrink T] [--shrink-streaks S] [--streak-level L]

Each MODEL is what `derain.hub.resolve_model` accepts (a model directory, a run, or `bundled`). OUT gets
the architecture's config.json with the `averaged_from` list, and the mean weights, written atomically.
`--darken-only` sets the model config's `darken_only` (D_dr keeps the negative part of its residual),
`--shrink T` its `shrink` (D_dr soft-thresholds its residual by T, on the 0-1 scale), `--shrink-streaks S` its
`shrink_streaks` (the threshold on the input's own rain streaks at inference, derain.inference.streak_threshold),
`--streak-level L` its `streak_level` (where the input's rain layer exceeds L grey levels, a streak).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from derain.errors import DerainError
from derain.hub import from_pretrained, read_config, resolve_model, save_pretrained


def average_models(paths: list[Path]) -> torch.nn.Module:
    nets = [from_pretrained(p) for p in paths]
    states = [n.state_dict() for n in nets]
    if any(s.keys() != states[0].keys() or any(s[k].shape != states[0][k].shape for k in s) for s in states):
        raise DerainError(f"{', '.join(map(str, paths))}: the models differ in architecture; only one "
                          "architecture's weights can be averaged")
    mean = {k: (sum(s[k].double() for s in states) / len(states)).to(states[0][k].dtype) for k in states[0]}
    nets[0].load_state_dict(mean)
    return nets[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("models", nargs="+")
    parser.add_argument("--darken-only", action="store_true", help="no output pixel brighter than the input")
    parser.add_argument("--shrink", type=float, help="soft threshold on D_dr's residual (0-1 scale)")
    parser.add_argument("--shrink-streaks", type=float, help="D_dr's threshold on the input's rain streaks (0-1 scale)")
    parser.add_argument("--streak-level", type=float, help="where a streak is: the input's rain layer over this (grey levels)")
    args = parser.parse_args(argv)
    try:
        paths = [resolve_model(m) for m in args.models]
        net = average_models(paths)
        changes = {k: v for k, v in (("darken_only", args.darken_only or None), ("shrink", args.shrink),
                                     ("shrink_streaks", args.shrink_streaks),
                                     ("streak_level", args.streak_level)) if v is not None}
        if changes:
            changed = type(net)(dataclasses.replace(net.config, **changes))
            changed.load_state_dict(net.state_dict())
            net = changed
        stage = read_config(paths[0]).get("stage")
        save_pretrained(net, args.out, **({"stage": stage} if stage else {}), averaged_from=args.models)
    except DerainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: the mean of {len(args.models)} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
