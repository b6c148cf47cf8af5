"""How accurately torch's CPU batch norm computes its batch statistics in the channels-last and the contiguous
memory format: the largest error of the train-mode output against a float64 computation, on (32, 16, 32, 32)
inputs (itnas/ops.py `conv_bn_channels_last` keeps BN contiguous for this reason).

Usage: python reports/experiments/bn_channels_last_error.py
"""

import torch
import torch.nn.functional as F


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(32, 16, 32, 32) * 3 + 5
    want = F.batch_norm(x.double(), None, None, training=True)
    for name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        got = F.batch_norm(x.contiguous(memory_format=fmt), None, None, training=True)
        print(f"{name}: largest |error| against float64 = {(got.double() - want).abs().max().item():.2g}")


if __name__ == "__main__":
    main()
