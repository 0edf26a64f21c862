"""BLR-derived optimizers for deep networks (Khan & Rue 2023, Sec 4.2, 4.4, App F).

    opt = blrlib.optim.VON(model.parameters(), lr=0.1, n_data=len(train_set))
    with opt.sampled_params(train=True):
        F.cross_entropy(model(x), y).backward()
    opt.step()
    probs = blrlib.optim.predict(model, opt, x_test, n_samples=32)

Every class is the one diagonal-Gaussian step ``families.diag_gaussian.blr_update_`` with a
choice of estimator: :class:`Newton` (Eq 36-37, exact Hessian diagonal), :class:`AdamLike`
(Eq 38: RMSprop/Adam), :class:`OGN` / :class:`VOGN` (Eq 44-46, per-example Gauss-Newton) and
:class:`VON` (Eq 46 with the reparameterisation Hessian from one backward: Adam's state).
:class:`BayesBiNN` and :class:`STE` (Sec 4.5, Eq 48-52) are the {-1, +1} Bernoulli's step
``families.sign_bernoulli.bayesbinn_update_`` with the relaxed estimator or the delta method.
``dropout=pi1`` gives each of the Gaussian ones dropout (Eq 42-43), and
``dropout=ConcreteDropout(pi1)`` learns pi1 per parameter group (end of Sec 4.3).

**Several processes (torch.distributed, DDP).** Wrap the model in ``DistributedDataParallel``
and give every rank the same optimizer settings and a generator with the same seed
(``examples/ddp_train.py``, the book's "Training on many GPUs"). Every rank must hold the same
q and take the same step, and the step must be the one-process step on the ranks' batches
together. Two things make it so (``_distributed``):

* The draw is shared. Each rank's gradient is taken at theta ~ q and DDP averages them; that
  average is a gradient at one draw only if every rank drew the same theta (and the same
  dropout masks). Were the draws independent, VON's Hessian estimate (theta - m) s g would
  pair a rank's own noise with the average of W gradients, of which only its own correlates
  with it: its expectation would be H / W, a precision about 1/W of the truth, and the ranks'
  steps would differ. A generator in the same state on every rank gives one draw; with
  ``generator=None`` the optimizer makes one, seeded by rank 0. Each training draw checks, by
  an all-reduce of two numbers, that the generators agree, and raises (ValueError at the
  first draw, RuntimeError later) rather than train on per-rank noise: independent draws
  with an unbiased precision would need every rank's noise in every rank's estimate, an
  all-gather of the draws, which blrlib does not do. Draw on every rank alike (``predict``
  included), or predict with a copy, ``copy.deepcopy((model, opt))``.
* The curvature is averaged. :meth:`BLROptimizer.backward` (OGN, VOGN, Newton) computes the
  gradient and the Hessian estimate by ``torch.func``, outside DDP's hooks; it averages
  them over the ranks (one all-reduce), as DDP averages gradients. With equal shards the
  mean of the ranks' batch means is the mean over the concatenated batch (Eq 45's and
  Eq 37's estimates are means over examples), so each step is the one-process step.

The default process group is used whenever one is initialised with more than one rank;
``process_group=`` chooses another. ``tests/optim/test_distributed.py`` checks, on 2 gloo
processes, that the ranks end bitwise equal, equal to one process on the same global batches,
and that VON's precision on a quadratic is the exact Hessian.

**Checkpoints and copies** (``_checkpoint``): ``state_dict`` holds the generator's state and
only tensors, numbers and strings (``torch.load(weights_only=True)`` reads it), and a load
keeps the float32 state of bfloat16 weights; ``copy.deepcopy`` and ``pickle`` copy every
attribute. Save, load and continue, or copy and continue, equals the uninterrupted run bit for
bit (``tests/optim/test_checkpoint.py``).

Derived in :ref:`optim-diag`, :ref:`optim-ogn`, :ref:`optim-adam`, :ref:`optim-momentum`,
:ref:`optim-von`, :ref:`dropout-derivation` (dropout), :ref:`dropout-learn-rate`
(``ConcreteDropout``) and :ref:`binary-bayesbinn` (BayesBiNN, STE); several processes in
:doc:`/book/distributed`.
"""

from blrlib.optim._base import BLROptimizer, HessianEstimate
from blrlib.optim._concrete import ConcreteDropout
from blrlib.optim._draws import Draws
from blrlib.optim.bayesbinn import STE, BayesBiNN
from blrlib.optim.newton import AdamLike, Newton
from blrlib.optim.ogn import OGN, VOGN
from blrlib.optim.predictive import predict
from blrlib.optim.von import VON

__all__ = [
    "OGN", "STE", "VOGN", "VON", "AdamLike", "BLROptimizer", "BayesBiNN", "ConcreteDropout",
    "Draws", "HessianEstimate", "Newton", "predict",
]  # fmt: skip
