"""Command line: ``python -m blrlib.experiments --list`` or ``... NAME --scale full``."""

from __future__ import annotations

import argparse
import json

from blrlib.experiments import EXPERIMENTS, RESULTS_DIR, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m blrlib.experiments", description=__doc__)
    parser.add_argument("name", nargs="?", help="experiment to run")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--scale", choices=["ci", "full", "gpu"], default="full")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if any)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-seeds", type=int, default=None, help="override the seed count")
    parser.add_argument("--out-dir", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    if args.list or args.name is None:
        for name, fn in sorted(EXPERIMENTS.items()):
            summary = (fn.__doc__ or "").strip().split("\n")[0]
            print(f"{name}: {summary}")
        return
    record = run(
        args.name, scale=args.scale, device=args.device, seed=args.seed, n_seeds=args.n_seeds,
        out_dir=args.out_dir,
    )  # fmt: skip
    print(json.dumps(record["manifest"], indent=1))


if __name__ == "__main__":
    main()
