"""BLR-derived optimizers for deep networks (Khan & Rue 2023, Sec 4.2, 4.4, App F).

    opt = blrlib.optim.VON(model.parameters(), lr=0.1, n_data=len(train_set))
    with opt.sampled_params(train=True):
        F.cross_entropy(model(x), y).backward()
    opt.step()
    probs = blrlib.optim.predict(model, opt, x_test, n_samples=32)

Every class is the one diagonal-Gaussian step ``families.diag_gaussian.blr_update_`` with a
choice of estimator: :class:`Newton` (Eq 36-37, exact Hessian diagonal), :class:`AdamLike`
(Eq 38: RMSprop/Adam), :class:`OGN` / :class:`VOGN` (Eq 44-46, per-example Gauss-Newton) and
:class:`VON` (Eq 46 with the reparameterisation Hessian from one backward: Adam's cost).
:class:`BayesBiNN` and :class:`STE` (Sec 4.5, Eq 48-52) are the {-1, +1} Bernoulli's step
``families.sign_bernoulli.bayesbinn_update_`` with the relaxed estimator or the delta method.
``dropout=pi1`` gives each of the Gaussian ones dropout (Eq 42-43), and
``dropout=ConcreteDropout(pi1)`` learns pi1 per parameter group (end of Sec 4.3).
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
