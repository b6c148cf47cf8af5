"""ITNAS: differentiable neural architecture search with inter-layer transitions (library; knows nothing of DVC).

Modules, in reading order: `ops` (candidate ops), `spaces` (search spaces as data), `arch` (alpha
parameterisations: itnas, its ablations, darts, pcdarts; the method and base registries), `macro` (cell
stacking), `supernet` (mixed op, the generic search cell, supernets), `engine` (the one epoch loop), `search`
(the bi-level step function, second order), `derive` (genotype derivation), `genotype`, `networks` (final
networks), `train` (final training and evaluation), `records` (transitions as records), `config` and
`contracts` (typed configs and stage contracts), `checkpoint`, `data` (registry and readers, splits,
prepared data, leak checks, samples and loaders), `report`.
"""

__version__ = "0.1.0"
