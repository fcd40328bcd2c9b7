"""What the commands print besides results: progress bars that suit both terminals and logs,
one-line warnings, and lists of file names cut to a few.

Every progress bar of the command line comes from `progress_bar`, so how progress looks in a log
is decided here, once.
"""
from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

LOG_INTERVAL = 10.0  # seconds between progress lines when stderr is not a terminal
SHOWN_NAMES = 3  # names listed before "and N more"


def progress_bar(iterable: Iterable | None = None, **options):
    """A tqdm bar on a terminal. Elsewhere (a log, a pipe) a plain line every LOG_INTERVAL seconds,
    the first after LOG_INTERVAL, so short jobs print nothing. Takes tqdm's options."""
    from tqdm import tqdm

    stream = options.pop("file", None) or sys.stderr
    if options.get("disable") is True or _is_terminal(stream):
        return tqdm(iterable, file=stream, **options)
    options.update(disable=False, mininterval=LOG_INTERVAL, delay=LOG_INTERVAL, leave=True, ascii=True,
                   dynamic_ncols=False)
    return tqdm(iterable, file=_Lines(stream), **options)


class InnerBar:
    """A second, passing bar for the steps within one item of an outer bar (the tiles of one photo):
    called as (done, total), it opens at the first call of an item with more than one step, and closes
    when the item is done."""

    def __init__(self, unit: str, **options):
        self.unit, self.desc, self.bar, self.options = unit, "", None, options  # options: progress_bar's

    def __call__(self, done: int, total: int) -> None:
        if total < 2:
            return
        if self.bar is None:
            self.bar = progress_bar(total=total, unit=self.unit, desc=self.desc, leave=False, disable=None,
                                    **self.options)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _Lines:
    """A stream for tqdm that turns its carriage-return redraws into whole lines."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self._stream.write(line + "\n")

    def flush(self) -> None:
        getattr(self._stream, "flush", lambda: None)()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Python warnings raised inside (a tiling that overlap dominates, a strength that changes nothing)
    come out as `derain: warning:` lines when the block ends."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        warn(str(warning.message))


def warn(message: str) -> None:
    """`derain: warning: <message>` on stderr, without breaking a progress bar."""
    from tqdm import tqdm

    tqdm.write(f"derain: warning: {message}", file=sys.stderr)


def some_names(names: Iterable, shown: int = SHOWN_NAMES) -> str:
    """``a, b, c and 4 more``: the first few names, then a count of the rest."""
    names = [str(name) for name in names]
    listed = ", ".join(names[:shown])
    return f"{listed} and {len(names) - shown} more" if len(names) > shown else listed
