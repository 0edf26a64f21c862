"""Command line: list, run, or bring every stale full-scale record up to date.

    python -m blrlib.experiments --list              # each one; marks missing or stale records
    python -m blrlib.experiments NAME --scale full   # writes results/NAME.json
    python -m blrlib.experiments --stale             # every missing or stale record (make results)

Writing into results/ needs a clean working tree, so that the record's commit names the code
that produced it.
"""

from __future__ import annotations

import argparse
import json
import sys

from tqdm.auto import tqdm

from blrlib.experiments import EXPERIMENTS, RESULTS_DIR, is_stale, load, run


def _estimate_s(name: str) -> float | None:
    """The wall time of the last committed record of ``name``, if there is one."""
    record = load(name)
    return None if record is None else float(record["manifest"]["wall_time_s"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m blrlib.experiments", description=__doc__)
    parser.add_argument("names", nargs="*", help="experiments to run")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--stale", action="store_true", help="run every missing or stale one")
    parser.add_argument("--scale", choices=["ci", "full", "gpu"], default="full")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if any)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-seeds", type=int, default=None, help="override the seed count")
    parser.add_argument("--out-dir", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    if args.list or not (args.names or args.stale):
        for name, fn in sorted(EXPERIMENTS.items()):
            summary = (fn.__doc__ or "").strip().split("\n")[0]
            mark = "  [record missing or stale]" if is_stale(name, args.out_dir) else ""
            print(f"{name}: {summary}{mark}")
        return
    names = list(args.names) or [n for n in sorted(EXPERIMENTS) if is_stale(n, args.out_dir)]
    estimates = {n: _estimate_s(n) for n in names}
    bar = tqdm(names, desc="experiments", unit="exp", file=sys.stdout)
    for i, name in enumerate(bar):
        left = [estimates[n] for n in names[i:] if estimates[n] is not None]
        bar.set_postfix_str(f"{name}; about {sum(left) / 60:.0f} min left for {len(left)} timed")
        record = run(
            name, scale=args.scale, device=args.device, seed=args.seed, n_seeds=args.n_seeds,
            out_dir=args.out_dir,
        )  # fmt: skip
        tqdm.write(json.dumps(record["manifest"]))


if __name__ == "__main__":
    main()
