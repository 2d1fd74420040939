"""Held-out learning curves over seeds: the greedy survival of each run's checkpoints on the
100 held-out towns, as a fraction of the oracle's, from the rows `bench_learning.py` wrote
(`checkpoint_curve`), drawn as the mean over seeds with a min-max band and one thin line per
seed. Training survival (`plot_run.py`) is measured on training lives, which may start with
lowered meters; this is the score the README's tables report, along the way.

    python scripts/plot_held_out.py pomdp_random_layout --overrides train.total_env_steps=17000000 \\
        --mark 17000000 --out docs/img/pomdp_random_layout_held_out.png   # the README's figure

Rows are chosen by experiment, commit (optional) and the exact list of overrides (none
unless given); a row read `--at-step` is left out, since its curve stops early.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plot_run import _style, spread  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def select(rows: list[dict], experiment: str, commit: str | None, overrides: list[str]) -> list[dict]:
    """One row per seed (the last written), trained from the start with these overrides."""
    chosen = {}
    for r in rows:
        if (r.get("experiment") == experiment and not r.get("summary") and r.get("checkpoint_curve")
                and not r.get("resumed_from") and not r.get("at_step") and r.get("overrides", []) == overrides
                and (commit is None or r.get("commit") == commit)):
            chosen[r["seed"]] = r
    return [chosen[s] for s in sorted(chosen)]


def curves(rows: list[dict]) -> list[tuple[list[int], list[float]]]:
    """Each row's (env steps, survival / oracle) along its checkpoints."""
    return [([p[0] for p in r["checkpoint_curve"]], [p[2] / r["oracle_mean"] for p in r["checkpoint_curve"]])
            for r in rows]


def plot(rows: list[dict], out: Path, mark: int | None = None) -> None:
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    _style(ax, f"{rows[0]['experiment']}: greedy survival on held-out towns, {len(rows)} seeds",
           "fraction of the oracle (500-step lives)")
    drawn = curves(rows)
    for r, (steps, values) in zip(rows, drawn):
        ax.plot(steps, values, lw=0.8, alpha=0.6, label=f"seed {r['seed']}")
    if len(drawn) > 1:
        grid, mean, low, high = spread(drawn)
        ax.fill_between(grid, low, high, alpha=0.2, label="min-max over seeds")
        ax.plot(grid, mean, lw=2.2, color="black", label="mean over seeds")
    ax.axhline(rows[0]["target"], color="green", ls="--", lw=1, label=f"target {rows[0]['target']}")
    if mark:
        ax.axvline(mark, color="red", ls=":", lw=1, label=f"shipped budget ({mark / 1e6:g}M)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize="small", loc="lower right")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment")
    ap.add_argument("--results", type=Path, default=ROOT / "results" / "learning.jsonl")
    ap.add_argument("--commit", help="only rows of this commit")
    ap.add_argument("--overrides", nargs="*", default=[], help="the rows' training overrides, exactly")
    ap.add_argument("--mark", type=int, help="draw a vertical line at this env step")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    rows = [json.loads(x) for x in args.results.read_text().splitlines() if x.strip()]
    chosen = select(rows, args.experiment, args.commit, args.overrides)
    if not chosen:
        print(f"error: no {args.experiment} rows with a checkpoint curve, overrides {args.overrides}"
              + (f", commit {args.commit}" if args.commit else "") + f" in {args.results}", file=sys.stderr)
        return 2
    plot(chosen, args.out, args.mark)
    ends = np.array([c[1][-1] for c in curves(chosen)])
    print(f"{args.out}: seeds {[r['seed'] for r in chosen]}, last checkpoint mean {ends.mean():.3f}, "
          f"min {ends.min():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
