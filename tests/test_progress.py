"""Progress when stderr is not a terminal: plain lines every few percent, at every epoch, and
while a slow step runs."""

from __future__ import annotations

import io
import time

from rich.progress import Progress

from ichseg.progress import PlainProgress, TrainingEpoch, make_progress, progress_bar


def advanced(total: int) -> list[str]:
    """The lines of a task of ``total`` steps advanced one by one to the end."""
    stream = io.StringIO()
    with PlainProgress(stream, interval_s=3600) as bar:
        task = bar.add_task("Predicting", total=total)
        for _ in range(total):
            bar.advance(task)
    return stream.getvalue().splitlines()


def test_a_long_task_gets_a_line_every_five_percent_and_at_the_end():
    lines = advanced(200)
    assert len(lines) == 20
    assert lines[0].startswith("Predicting: 10/200 (5%), ")
    assert lines[-1].startswith("Predicting: 200/200 (100%), ")


def test_a_short_task_gets_a_line_per_step():
    assert [line.split(",")[0] for line in advanced(3)] == [
        "Predicting: 1/3 (33%)", "Predicting: 2/3 (67%)", "Predicting: 3/3 (100%)"]


def test_every_epoch_is_a_line_with_its_loss_and_pseudo_dice():
    stream = io.StringIO()
    with PlainProgress(stream, interval_s=3600) as bar:
        task = bar.add_task("  3d fold 0", total=1000, every_step=True)
        for done in (1, 2):
            epoch = TrainingEpoch(done, 1000, train_loss=-0.5, val_loss=-0.25, pseudo_dice=0.625)
            bar.update(task, completed=epoch.done, description=f"  3d fold 0 ({epoch.summary})")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("3d fold 0 (loss -0.500, val loss -0.250, pseudo-Dice 0.625): 2/1000 (0%), ")


def test_a_quiet_step_still_reports_that_it_runs():
    stream = io.StringIO()
    with PlainProgress(stream, interval_s=0.05) as bar:
        bar.add_task("Planning", total=None)
        deadline = time.monotonic() + 30  # a line is due every 0.05 s; a busy machine may delay it
        while not stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = stream.getvalue().splitlines()
    assert lines and all(line.startswith("Planning: running, ") for line in lines)


def test_progress_is_plain_lines_off_a_terminal_and_nothing_when_disabled(capsys):
    assert isinstance(make_progress(True), PlainProgress)  # pytest's stderr is not a terminal
    assert isinstance(make_progress(False), Progress)
    assert list(progress_bar(range(4), "Reading", enabled=False)) == [0, 1, 2, 3]
    assert capsys.readouterr().err == ""
    assert list(progress_bar(range(4), "Reading")) == [0, 1, 2, 3]
    assert capsys.readouterr().err.splitlines()[-1].startswith("Reading: 4/4 (100%)")
