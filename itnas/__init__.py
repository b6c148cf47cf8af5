"""ITNAS: differentiable neural architecture search with inter-layer transitions (library; knows nothing of DVC).

Modules, in reading order: `ops` (candidate ops), `spaces` (search spaces as data), `arch` (alpha
parameterisations: itnas, its ablations, darts, pcdarts), `supernet` (mixed op, search cells and networks),
`search` (bi-level loop, second order), `derive` (genotype derivation), `genotype`, `networks` (final networks),
`train`, `data`, `report`, `bench`.
"""

__version__ = "0.1.0"
