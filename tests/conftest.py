"""Shared test setup.

The tests use tiny tensors (C=4..16, 8x8 inputs): intra-op threading only adds overhead there, and on a busy
2-core machine (a search running beside the tests) OpenMP oversubscription made them ~10x slower. One thread
also makes float reductions run in a fixed order.
"""

import torch

torch.set_num_threads(1)
