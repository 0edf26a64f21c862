"""blrlib: the Bayesian learning rule of Khan & Rue (2023) in PyTorch.

    from blrlib import blr, families
    q = families.Gaussian(3)                                   # the candidate family
    lam = q.natural_from_moments(torch.zeros(3), torch.eye(3))
    lam = blr.step(q, lam, loss, rho=1.0, estimator="delta")   # one Newton step (Sec 1.3.2)
    m, cov = q.mean_cov(lam)

Modules: ``families`` (candidates q and their two parametrisations, the spike and slab of
dropout and the mixture with learned weights included), ``blr`` (the rule, Eq 3-6),
``estimators`` (natural-gradient estimators, dropout's Eq 84 among them), ``infer`` (MAP,
Laplace, VI, HMC, MC dropout, Kalman/RTS), ``optim``
(BLR optimizers for networks: Newton, AdamLike, OGN, VOGN, VON, each with a ``dropout`` option,
pi1 fixed or learned by ``ConcreteDropout``; BayesBiNN, STE; ``bench`` times them), ``dropout``
(the exact spike-and-slab step and the cost of
App G's approximations), ``enumeration`` (exact posteriors over {-1, +1}^P for binary weights),
``conjugate`` (Bayes' rule as one BLR step, Eq 54), ``linear_gaussian`` (GP regression and
state-space models), ``em`` (EM as coordinate-wise BLR steps, Eq 55-56), ``vmp`` (VMP and SVI
for a Bayesian Gaussian mixture, Sec 5.3), ``ncvi`` (non-conjugate VI in global and site form,
Eq 58-60), ``sgd_bayes`` (constant SGD as inference, Mandt et al. 2017), ``experiments`` (each
chapter's experiments at ci and full scale), ``data``, ``landscapes``, ``metrics`` and ``viz``.

Derived in :doc:`/book/blr`; :doc:`/book/table1` maps every rule to its module and chapter.
"""

__version__ = "0.1.0"
