"""Learning curves of one or more training runs, read from their metrics.jsonl, as one PNG.

Six panels against env steps: episodic survival, episodic return, curriculum stage
distribution, epsilon, TD loss and SPS. Several run dirs (e.g. seeds of one experiment)
draw one line per run, labelled by the dir name; the stage panel then shows the first run
that has stage fractions. Event rows (those with an "event" key, e.g. curriculum stage
changes) are not curve points; stage changes are marked as ticks on the stage panel.
A metric that no run logged leaves its panel saying "no data".

    python scripts/plot_run.py outputs/2025-01-01/12-00-00
    python scripts/plot_run.py runs/seed0 runs/seed1 runs/seed2 --out seeds.png
    python scripts/plot_run.py runs/seed* --spread --out seeds.png   # mean and min-max band

With --spread the line panels show the mean over runs and a band from the lowest to the
highest run, each run's curve interpolated at the env steps the runs logged, up to where
the shortest run ends.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402

# (metric, panel title, y label); the stage panel is drawn separately.
LINE_PANELS = {
    "survival": ("charts/episodic_length", "Episodic survival", "steps survived"),
    "return": ("charts/episodic_return", "Episodic return", "return"),
    "epsilon": ("charts/epsilon", "Exploration epsilon", "epsilon"),
    "td_loss": ("losses/td_loss", "TD loss", "loss"),
    "sps": ("charts/SPS", "Throughput", "env steps / s"),
}
STAGE_KEY = re.compile(r"^curriculum/stage_(\d+)$")
STAGE_EVENT = "curriculum_stage_change"


@dataclass
class Run:
    """One run's curves: metric -> (steps, values), plus the steps of its stage-change events."""

    name: str
    series: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    stage_events: list[int] = field(default_factory=list)

    def curve(self, metric: str) -> tuple[list[int], list[float]]:
        return self.series.get(metric, ([], []))

    def stage_count(self) -> int:
        found = [int(m.group(1)) for k in self.series if (m := STAGE_KEY.match(k))]
        return max(found) + 1 if found else 0


def read_run(run_dir: Path) -> Run:
    """Parse metrics.jsonl; non-numeric and null values (non-finite at log time) are skipped."""
    run = Run(name=run_dir.resolve().name)
    with open(run_dir / "metrics.jsonl") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a run killed mid-write leaves a torn last line
                print(f"warning: {run_dir / 'metrics.jsonl'}:{lineno}: not JSON, skipped", file=sys.stderr)
                continue
            step = row.get("global_step")
            if not isinstance(step, (int, float)):
                continue
            if "event" in row:
                if row["event"] == STAGE_EVENT:
                    run.stage_events.append(int(step))
                continue
            for key, value in row.items():
                if key == "global_step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                if not math.isfinite(value):
                    continue
                steps, values = run.series.setdefault(key, ([], []))
                steps.append(int(step))
                values.append(float(value))
    for key, (steps, values) in run.series.items():  # a resumed run appends; keep step order
        order = sorted(range(len(steps)), key=steps.__getitem__)
        run.series[key] = ([steps[i] for i in order], [values[i] for i in order])
    return run


def _no_data(ax) -> None:
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
            fontsize=14, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _style(ax, title: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel("env steps")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.grid(alpha=0.3)


def spread(curves: list[tuple[list[int], list[float]]]):
    """The mean, min and max over runs at every step any run logged (within the range all
    runs cover), each curve interpolated linearly between its own points."""
    end = min(steps[-1] for steps, _ in curves)
    start = max(steps[0] for steps, _ in curves)
    grid = np.array(sorted({s for steps, _ in curves for s in steps if start <= s <= end}), dtype=float)
    ys = np.stack([np.interp(grid, steps, values) for steps, values in curves])
    return grid, ys.mean(0), ys.min(0), ys.max(0)


def plot_lines(ax, runs: list[Run], metric: str, title: str, ylabel: str, log_if_positive: bool = False,
               band: bool = False) -> None:
    _style(ax, f"{title}\n({metric})", ylabel)
    drawn = [(run, run.curve(metric)) for run in runs if run.curve(metric)[0]]
    if not drawn:
        _no_data(ax)
        return
    if band and len(drawn) > 1:
        grid, mean, low, high = spread([curve for _, curve in drawn])
        ax.fill_between(grid, low, high, alpha=0.3, label=f"min-max of {len(drawn)} runs")
        ax.plot(grid, mean, label="mean")
        drawn = []
    for run, (steps, values) in drawn:
        ax.plot(steps, values, marker="." if len(steps) < 30 else None, label=run.name)
    if log_if_positive and all(v > 0 for run in runs for v in run.curve(metric)[1]):
        ax.set_yscale("log")
    if len(runs) > 1:
        ax.legend(fontsize="small")


def plot_stages(ax, runs: list[Run]) -> None:
    """Stacked fractions of agents per curriculum stage, for the first run that logged them."""
    _style(ax, "Curriculum stage distribution\n(curriculum/stage_k)", "fraction of agents")
    run = next((r for r in runs if r.stage_count()), None)
    if run is None:
        _no_data(ax)
        return
    if len(runs) > 1:
        ax.set_title(f"Curriculum stage distribution\n(run {run.name})")
    stages = run.stage_count()
    steps = sorted({s for k in range(stages) for s in run.curve(f"curriculum/stage_{k}")[0]})
    layers = []
    for k in range(stages):  # a stage missing from a row had no agents in it
        by_step = dict(zip(*run.curve(f"curriculum/stage_{k}")))
        layers.append([by_step.get(s, 0.0) for s in steps])
    colors = plt.cm.viridis([k / max(stages - 1, 1) for k in range(stages)])
    ax.stackplot(steps, layers, labels=[f"stage {k}" for k in range(stages)], colors=colors, alpha=0.85)
    ax.set_ylim(0, 1)
    if len(steps) > 1:
        ax.set_xlim(steps[0], steps[-1])
    for i, s in enumerate(sorted(set(run.stage_events))):
        ax.axvline(s, color="red", lw=0.8, ls="--", alpha=0.8, label="stage change" if i == 0 else None)
    ax.legend(fontsize="small", loc="lower left")


def figure(runs: list[Run], band: bool = False):
    """The 2x3 panel figure; the caller saves and closes it."""
    fig, axes = plt.subplots(2, 3, figsize=(16, 9), constrained_layout=True)
    (a_surv, a_ret, a_stage), (a_eps, a_loss, a_sps) = axes
    plot_lines(a_surv, runs, *LINE_PANELS["survival"], band=band)
    plot_lines(a_ret, runs, *LINE_PANELS["return"], band=band)
    plot_stages(a_stage, runs)
    plot_lines(a_eps, runs, *LINE_PANELS["epsilon"], band=band)
    plot_lines(a_loss, runs, *LINE_PANELS["td_loss"], log_if_positive=True, band=band)
    plot_lines(a_sps, runs, *LINE_PANELS["sps"], band=band)
    fig.suptitle("Learning curves: " + ", ".join(r.name for r in runs), fontsize=14)
    return fig


def plot(runs: list[Run], out: Path, band: bool = False) -> None:
    fig = figure(runs, band)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run directory holding metrics.jsonl; several to compare seeds")
    parser.add_argument("--out", type=Path, default=None,
                        help="PNG path (default: FIRST_RUN_DIR/learning_curves.png)")
    parser.add_argument("--spread", action="store_true",
                        help="one mean line and a min-max band over the runs instead of a line per run")
    args = parser.parse_args(argv)

    missing = [d for d in args.run_dirs if not (d / "metrics.jsonl").is_file()]
    for d in missing:
        what = "does not exist" if not d.exists() else "has no metrics.jsonl"
        print(f"error: run dir {d} {what}", file=sys.stderr)
    if missing:
        return 2
    runs = [read_run(d) for d in args.run_dirs]
    if len({r.name for r in runs}) < len(runs):  # e.g. seed0/run and seed1/run: label by path
        for run, d in zip(runs, args.run_dirs):
            run.name = str(d)
    out = args.out or args.run_dirs[0] / "learning_curves.png"
    plot(runs, out, band=args.spread)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
