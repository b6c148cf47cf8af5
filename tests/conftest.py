"""Shared test setup.

The tests use tiny tensors (C=4..16, 8x8 inputs): intra-op threading only adds overhead there, and on a busy
2-core machine (a search running beside the tests) OpenMP oversubscription made them ~10x slower. One thread
also makes float reductions run in a fixed order.
"""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread_after_each_test():
    """A stage command run in-process sets the process's thread count from its params (`threads`,
    `pipeline.common.use_threads`); put it back to 1 so that no later test sums in another order."""
    yield
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
