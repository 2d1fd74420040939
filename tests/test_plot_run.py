"""scripts/plot_run.py: a hand-written metrics.jsonl (with an event row and a metric never
logged) becomes a PNG; several run dirs compare; a missing run dir is a clean user error.
The parsing and panel contents are checked in-process against the hand-written rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "plot_run.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# No losses/td_loss anywhere (its panel must say "no data"); one stage-change event row at 200;
# a null (non-finite at log time) return at 300; stage_1 absent from the first row.
ROWS = [
    {"global_step": 100, "charts/SPS": 1000.0, "charts/epsilon": 1.0, "curriculum/stage_0": 1.0},
    {"global_step": 200, "charts/SPS": 1100.0, "charts/epsilon": 0.5, "charts/episodic_length": 40.0,
     "charts/episodic_return": 3.0, "curriculum/stage_0": 0.75, "curriculum/stage_1": 0.25},
    {"global_step": 200, "event": "curriculum_stage_change", "agent": 3, "from_stage": 0, "to_stage": 1,
     "reason": "advance", "survival_rate": 0.9},
    {"global_step": 300, "charts/SPS": 1200.0, "charts/epsilon": 0.1, "charts/episodic_length": 60.0,
     "charts/episodic_return": None, "curriculum/stage_0": 0.5, "curriculum/stage_1": 0.5},
]


def write_run(folder: Path, rows=ROWS) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def test_writes_png_next_to_metrics_by_default(tmp_path):
    run_dir = write_run(tmp_path / "seed0")
    result = run_script(str(run_dir))
    assert result.returncode == 0, result.stderr
    out = run_dir / "learning_curves.png"
    assert result.stdout.strip() == str(out)
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_several_runs_to_explicit_out(tmp_path):
    a = write_run(tmp_path / "seed0")
    b = write_run(tmp_path / "seed1", ROWS[:2])
    out = tmp_path / "plots" / "seeds.png"
    result = run_script(str(a), str(b), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert not (a / "learning_curves.png").exists()


def test_missing_run_dir_is_a_clean_error(tmp_path):
    good = write_run(tmp_path / "seed0")
    missing = tmp_path / "no_such_run"
    result = run_script(str(good), str(missing))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"error: run dir {missing} does not exist" in result.stderr
    assert not (good / "learning_curves.png").exists()


def test_run_dir_without_metrics_is_a_clean_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_script(str(empty))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "has no metrics.jsonl" in result.stderr


def test_event_rows_are_ticks_not_curve_points(load_script, tmp_path):
    plot_run = load_script("plot_run")
    run = plot_run.read_run(write_run(tmp_path / "seed0"))
    assert run.name == "seed0"
    assert run.curve("charts/SPS") == ([100, 200, 300], [1000.0, 1100.0, 1200.0])  # event row at 200 skipped
    assert run.curve("charts/episodic_return") == ([200], [3.0])  # null at 300 skipped
    assert run.curve("losses/td_loss") == ([], [])
    assert "agent" not in run.series and "survival_rate" not in run.series
    assert run.stage_events == [200]
    assert run.stage_count() == 2


def test_panels_show_the_hand_written_curves(load_script, tmp_path):
    plot_run = load_script("plot_run")
    run = plot_run.read_run(write_run(tmp_path / "seed0"))
    fig = plot_run.figure([run])
    surv, ret, stage, eps, loss, sps = fig.axes  # row-major order of the 2x3 grid

    def texts(ax):
        return [t.get_text() for t in ax.texts]

    assert texts(loss) == ["no data"] and not loss.lines
    assert "TD loss" in loss.get_title() and loss.get_xlabel() == "env steps"
    for ax in (surv, ret, eps, sps):
        assert texts(ax) == [] and len(ax.lines) == 1
    assert list(surv.lines[0].get_xdata()) == [200, 300]
    assert list(surv.lines[0].get_ydata()) == [40.0, 60.0]
    assert list(eps.lines[0].get_ydata()) == [1.0, 0.5, 0.1]
    # Stacked stages: stage 0 is the bottom band; stage 1 (absent at step 100 -> 0) stacks on it to 1.
    bands = stage.collections[:2]
    top = [max(y for x, y in band.get_paths()[0].vertices if x == s) for band in bands for s in (100, 200, 300)]
    assert top == [1.0, 0.75, 0.5, 1.0, 1.0, 1.0]
    assert [line.get_xdata()[0] for line in stage.lines] == [200]  # the stage-change tick
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_spread_draws_the_mean_and_min_max_band_of_several_runs(load_script, tmp_path):
    """Two hand-written epsilon curves (1.0, 0.5, 0.1) and (0.6, 0.3, 0.1) on the same steps:
    the mean line passes through 0.8, 0.4, 0.1; the band spans min..max at each step."""
    import matplotlib.pyplot as plt
    import numpy as np

    plot_run = load_script("plot_run")
    other = [dict(r, **{"charts/epsilon": e}) if "charts/epsilon" in r else r
             for r, e in zip(ROWS, (0.6, 0.3, None, 0.1))]
    runs = [plot_run.read_run(write_run(tmp_path / "seed0")), plot_run.read_run(write_run(tmp_path / "seed1", other))]
    fig = plot_run.figure(runs, band=True)
    eps = fig.axes[3]
    [mean] = eps.lines
    x, y = np.asarray(mean.get_xdata()), np.asarray(mean.get_ydata())
    for step, expected in ((100, 0.8), (200, 0.4), (300, 0.1)):
        assert np.interp(step, x, y) == pytest.approx(expected)
    verts = eps.collections[0].get_paths()[0].vertices
    at_100 = sorted(v[1] for v in verts if v[0] == 100)
    assert at_100[0] == pytest.approx(0.6) and at_100[-1] == pytest.approx(1.0)
    plt.close(fig)
    assert run_script(str(tmp_path / "seed0"), str(tmp_path / "seed1"), "--spread",
                      "--out", str(tmp_path / "s.png")).returncode == 0
    assert (tmp_path / "s.png").read_bytes().startswith(PNG_MAGIC)
