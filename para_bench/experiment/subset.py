"""``python -m para_bench.experiment.subset SRC DST --suite S --episodes n ...``

Writes the demos a direct ``para-bench collect`` of ``n`` episodes would have kept, taken
from a larger collection ``SRC`` of the same suite, split (train), tasks and seed: the plan
of ``n`` episodes is a prefix of the plan of ``N >= n`` (episode ``i`` depends on ``i``
only), so the subset is the demos whose episode is among the first ``n`` of each task,
copied in order and renumbered ``demo_0..``. Collection attributes are copied; the
failed-episode list and the frame total are recomputed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def subset_demos(src: str | Path, dst: str | Path, episode_ids: list[str]) -> int:
    """Copies the demos of ``src`` whose ``episode_id`` is in ``episode_ids`` to ``dst``.

    Returns:
        The number of demos written.
    """
    import h5py

    wanted = set(episode_ids)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        data = f["data"]
        out = g.create_group("data")
        for k, v in data.attrs.items():
            out.attrs[k] = v
        names = sorted(data, key=lambda n: int(n.rsplit("_", 1)[-1]))
        kept = [n for n in names if data[n].attrs["episode_id"] in wanted]
        for i, name in enumerate(kept):
            f.copy(data[name], out, name=f"demo_{i}")
        failed = json.loads(data.attrs.get("failed_episode_ids", "[]"))
        out.attrs["failed_episode_ids"] = json.dumps(sorted(set(failed) & wanted))
        out.attrs["total"] = int(sum(out[n].attrs["num_samples"] for n in out))
    return len(kept)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m para_bench.experiment.subset",
                                description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--suite", required=True)
    p.add_argument("--tasks", required=True)
    p.add_argument("--episodes", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from para_bench.suites import get_suite

    plan = get_suite(args.suite).plan("train", tasks=args.tasks.split(","),
                                      episodes=args.episodes, seed=args.seed)
    n = subset_demos(args.src, args.dst, [s.episode_id for s in plan])
    print(f"wrote {n} demos (of {len(plan)} episodes) to {args.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
