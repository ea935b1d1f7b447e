"""Oracle episodes per hour on pos_ood with 1 worker vs 2 workers, measured in one run.

Each setting runs the same plan (``pos_ood`` test split, ``libero_spatial/0``, the first
``--episodes`` positions, ``--no-coverage``) through the real CLI
(``python -m para_bench.cli run ... --workers K``) into a fresh temporary folder, one
setting after the other. Episodes per hour count the whole command's wall time
(interpreter start, simulator builds, worker spawns included), as a user sees it; the
per-episode seconds come from the records. Run it on an otherwise quiet machine: with
other simulators sharing the CPU, the speed-up says little.

Usage: ``python benchmarks/workers_throughput.py [--episodes 8] [--workers 1 2]``. Prints
a table and writes ``benchmarks/results/workers_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

SUITE, SPLIT, TASK = "pos_ood", "test", "libero_spatial/0"


def run_setting(workers: int, episodes: int, max_steps: int, out: Path) -> dict:
    """Runs the plan once with ``workers`` workers through the CLI; returns its timings.

    Args:
        workers: ``--workers`` for the run.
        episodes: ``--episodes`` (positions of the test split).
        max_steps: ``--max-steps`` per episode.
        out: a fresh run folder.

    Returns:
        Episodes, wall seconds, episodes per hour, mean episode seconds, successes, errors.

    Raises:
        RuntimeError: the CLI failed.
    """
    cmd = [sys.executable, "-m", "para_bench.cli", "run", "--agent", "oracle", "--suite",
           SUITE, "--split", SPLIT, "--tasks", TASK, "--episodes", str(episodes),
           "--max-steps", str(max_steps), "--no-coverage", "--quiet",
           "--workers", str(workers), "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"--workers {workers} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-2000:]}")
    records = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    return {
        "workers": workers,
        "episodes": len(records),
        "wall_s": wall,
        "episodes_per_hour": 3600 * len(records) / wall,
        "mean_episode_s": sum(r["wall_time_s"] or 0 for r in records) / max(1, len(records)),
        "successes": sum(r["success"] for r in records),
        "errors": sum(r["status"] == "error" for r in records),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=8, help="episodes per setting")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="worker counts to compare; the first is the baseline")
    ap.add_argument("--max-steps", type=int, default=600, help="per episode (smoke tests)")
    args = ap.parse_args()

    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="workers_throughput_") as tmp:
        for k in args.workers:
            rows.append(run_setting(k, args.episodes, args.max_steps, Path(tmp) / f"w{k}"))
    base = rows[0]["episodes_per_hour"]
    for row in rows:
        row["speedup"] = row["episodes_per_hour"] / base

    print(f"{'workers':>7} {'episodes':>8} {'wall s':>8} {'ep/hour':>8} {'s/episode':>9} "
          f"{'success':>8} {'speed-up':>8}")
    for r in rows:
        print(f"{r['workers']:>7} {r['episodes']:>8} {r['wall_s']:8.1f} "
              f"{r['episodes_per_hour']:8.0f} {r['mean_episode_s']:9.1f} "
              f"{r['successes']:>4}/{r['episodes']:<3} {r['speedup']:7.2f}x")
    out = Path(__file__).parent / "results" / "workers_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "suite": SUITE, "split": SPLIT, "task": TASK, "episodes": args.episodes,
        "max_steps": args.max_steps, "cpu_count": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "runs": rows,
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
