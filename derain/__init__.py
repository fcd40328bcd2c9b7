"""derain: remove rain streaks from photographs, trained by task transfer learning."""
__version__ = "0.1.0"


def __getattr__(name: str):
    """`derain.load` imports torch on first use, so `import derain` stays light."""
    if name == "load":
        from derain.api import load

        return load
    raise AttributeError(f"module 'derain' has no attribute {name!r}")
