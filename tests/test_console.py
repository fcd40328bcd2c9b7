"""Progress in terminals and in logs, warnings, and lists of names cut to a few."""
import io
import time

import pytest

from derain import console


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_in_a_log_is_a_whole_line_every_interval(monkeypatch):
    monkeypatch.setattr(console, "LOG_INTERVAL", 0.05)
    log = io.StringIO()
    for _ in console.progress_bar(range(40), desc="work", unit="img", file=log):
        time.sleep(0.005)
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and text.endswith("\n")
    assert 1 < len(lines) < 20  # not one per item
    assert all(line.startswith("work:") for line in lines) and "40/40" in lines[-1]


def test_a_short_job_prints_nothing_in_a_log():
    log = io.StringIO()
    assert list(console.progress_bar(range(5), desc="work", file=log, leave=False)) == list(range(5))
    assert log.getvalue() == ""


def test_a_terminal_gets_the_redrawn_bar():
    screen = Terminal()
    list(console.progress_bar(range(3), desc="work", file=screen, disable=None))
    assert "\r" in screen.getvalue()


def test_disabled_stays_disabled():
    log = io.StringIO()
    list(console.progress_bar(range(3), file=log, disable=True))
    assert log.getvalue() == ""


def test_inner_bar_shows_the_steps_of_an_item_of_many_and_closes():
    screen = Terminal()
    steps = console.InnerBar("tile", file=screen, mininterval=0)
    steps.desc = "a.png"
    steps(1, 1)  # one step: no bar
    assert screen.getvalue() == "" and steps.bar is None
    for done in (1, 2, 3):
        steps(done, 3)
    assert "a.png" in screen.getvalue() and "3/3" in screen.getvalue() and steps.bar is None


@pytest.mark.parametrize("names, text", [([], ""), (["a"], "a"), (["a", "b", "c"], "a, b, c"),
                                         (["a", "b", "c", "d", "e"], "a, b, c and 2 more")])
def test_some_names(names, text):
    assert console.some_names(names) == text


def test_warn(capsys):
    console.warn("careful")
    assert capsys.readouterr().err == "derain: warning: careful\n"
