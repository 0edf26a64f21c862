"""Each chapter's experiments at three scales: ci (seconds), full (a 2-core CPU), gpu.

    from blrlib import experiments
    record = experiments.run("fig1_wall", scale="ci")
    record["manifest"]["wall_time_s"], sorted(record["result"])

On the command line: ``python -m blrlib.experiments --list`` and
``python -m blrlib.experiments NAME --scale full``, which writes ``results/NAME.json``.
"""

from blrlib.experiments import (
    binary,
    binary_enumeration,
    binary_mnist,
    conjugate_em,
    deep,
    deep_toys,
    dropout,
    dropout_uq,
    minima,
    optim_mnist,
    optimisers,
    primer,
    primer_nets,
    protocol,
    report,
    sgd,
    sgd_posterior,
    sgd_samplers,
    vi,
    vi_mixture,
)
from blrlib.experiments._registry import (
    EXPERIMENTS,
    RESULTS_DIR,
    Scale,
    default_device,
    describe,
    is_stale,
    load,
    register,
    run,
    source_file,
    tree_is_dirty,
)

__all__ = [
    "EXPERIMENTS",
    "RESULTS_DIR",
    "Scale",
    "binary",
    "binary_enumeration",
    "binary_mnist",
    "conjugate_em",
    "deep",
    "deep_toys",
    "default_device",
    "describe",
    "dropout",
    "dropout_uq",
    "is_stale",
    "load",
    "minima",
    "optim_mnist",
    "optimisers",
    "primer",
    "primer_nets",
    "protocol",
    "register",
    "report",
    "run",
    "sgd",
    "sgd_posterior",
    "sgd_samplers",
    "source_file",
    "tree_is_dirty",
    "vi",
    "vi_mixture",
]
