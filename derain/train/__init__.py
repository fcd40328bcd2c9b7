"""Training by task transfer learning (paper Fig. 3): `train(config, out)` runs the pipeline.

See docs/training.md. The modules: config (the YAML schema), stages (networks, data and loss of
each stage), loop (the one training loop), rundir (what a run writes), distributed (torchrun).
"""
from __future__ import annotations


def __getattr__(name: str):
    if name == "train":  # imported on first use, so `import derain.train.config` stays light
        from derain.train.pipeline import train

        return train
    raise AttributeError(f"module 'derain.train' has no attribute {name!r}")
