"""Each chapter's experiments at three scales: ci (seconds), full (a 2-core CPU), gpu.

    from blrlib import experiments
    record = experiments.run("fig1_wall", scale="ci")
    record["manifest"]["wall_time_s"], sorted(record["result"])

On the command line: ``python -m blrlib.experiments --list`` and
``python -m blrlib.experiments NAME --scale full``, which writes ``results/NAME.json``.
"""

from blrlib.experiments import (
    binary,
    conjugate_em,
    deep,
    dropout,
    dropout_uq,
    minima,
    optimisers,
    primer,
    protocol,
    sgd,
    sgd_posterior,
    vi,
)
from blrlib.experiments._registry import (
    EXPERIMENTS,
    RESULTS_DIR,
    Scale,
    default_device,
    describe,
    load,
    register,
    run,
)

__all__ = [
    "EXPERIMENTS",
    "RESULTS_DIR",
    "Scale",
    "binary",
    "conjugate_em",
    "deep",
    "default_device",
    "describe",
    "dropout",
    "dropout_uq",
    "load",
    "minima",
    "optimisers",
    "primer",
    "protocol",
    "register",
    "run",
    "sgd",
    "sgd_posterior",
    "vi",
]
