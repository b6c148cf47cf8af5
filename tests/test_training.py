"""Final training: stem stride, channels-last, exact resume, images resized once per split."""

from __future__ import annotations

import pytest
import torch
from tiny_project import image_split as _split

from itnas.config import ConfigError
from itnas.config_parse import parse_config
from itnas.contracts import FinalNetworkConfig
from itnas.data import ImageDataset
from itnas.genotype import PUBLISHED_GENOTYPES
from itnas.networks import count_multiply_adds, count_parameters, create_final_network, final_network_from_config
from itnas.train import train_final
from itnas.train_config import TrainConfig


def _cfg(drop_path: float = 0.1, stem_stride: int = 1, channels_last: bool = False) -> TrainConfig:
    return TrainConfig(epochs=2, network={"C": 4, "layers": 3, "stem_stride": stem_stride, "auxiliary": True},
                       optimizer={"lr": 0.05, "lr_min": 0.0}, regularization={"drop_path": drop_path},
                       data={"batch_size": 8, "cutout": 0, "crop_padding": 0, "hflip": False},
                       channels_last=channels_last)


def _net(cfg: TrainConfig, seed: int = 0):
    torch.manual_seed(seed)
    n = cfg.network
    return create_final_network(PUBLISHED_GENOTYPES["darts_v2"], n.C, n.layers, 3, n.auxiliary, 1, n.stem_stride)


@pytest.mark.parametrize("name", sorted(PUBLISHED_GENOTYPES))
def test_stem_stride_two_is_stride_one_on_half_the_input(name):
    """A stride-2 stem keeps every parameter and makes a 2H x 2W input cost exactly what H x W costs at stride 1."""
    geno = PUBLISHED_GENOTYPES[name]
    s1 = create_final_network(geno, C=4, layers=5, num_classes=10, auxiliary=False, in_channels=1)
    s2 = create_final_network(geno, C=4, layers=5, num_classes=10, auxiliary=False, in_channels=1, stem_stride=2)
    assert count_parameters(s1) == count_parameters(s2)
    assert count_multiply_adds(s2, (1, 28, 28)) == count_multiply_adds(s1, (1, 14, 14))
    assert count_multiply_adds(s2, (1, 28, 28)) < count_multiply_adds(s1, (1, 28, 28)) / 3
    logits, _ = s2(torch.randn(2, 1, 28, 28))
    assert logits.shape == (2, 10)


def test_stem_stride_out_of_range_is_named():
    with pytest.raises(ConfigError, match=r"train\.network\.stem_stride=3"):
        parse_config(TrainConfig, {"network": {"stem_stride": 3}}, "train")
    with pytest.raises(ValueError, match="stem_stride must be 1 or 2, got 3"):
        create_final_network(PUBLISHED_GENOTYPES["darts_v2"], C=4, layers=3, stem_stride=3)


def test_evaluation_rebuilds_the_trained_network():
    """`final_network_from_config` (used by the train and evaluate stages) rebuilds the network of a
    `FinalNetworkConfig` exactly, also from its JSON dump (what model.pt stores): stride-2 weights loaded into it
    give the logits of the trained model; a stride-1 network would load the same weights silently (same shapes)
    and give other logits."""
    config = FinalNetworkConfig(genotype=PUBLISHED_GENOTYPES["darts_v2"].to_dict(),
                                network=_cfg(stem_stride=2).network, num_classes=3, in_channels=1, image_size=16,
                                mean=[0.5], std=[0.25])
    stored = config.model_dump(mode="json")
    assert FinalNetworkConfig.model_validate(stored) == config
    torch.manual_seed(0)
    trained = final_network_from_config(config).eval()
    rebuilt = final_network_from_config(FinalNetworkConfig.model_validate(stored)).eval()
    assert rebuilt.stem[0].stride == (2, 2)
    rebuilt.load_state_dict(trained.state_dict())
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(rebuilt(x)[0], trained(x)[0], rtol=0, atol=0)
    # a network block without stem_stride means the DARTS default, stride 1
    old = dict(stored, network={k: v for k, v in stored["network"].items() if k != "stem_stride"})
    stride1 = final_network_from_config(FinalNetworkConfig.model_validate(old)).eval()
    stride1.load_state_dict(trained.state_dict())
    assert stride1.stem[0].stride == (1, 1) and not torch.allclose(stride1(x)[0], trained(x)[0])


def test_channels_last_trains_the_same_model():
    """The memory format is a speed setting: the trained parameters match the contiguous run (float tolerance),
    and with channels_last the activations really are channels-last."""
    train_set = ImageDataset(_split(32), [0.5], [0.25])
    results = []
    for channels_last in (False, True):
        cfg = _cfg(channels_last=channels_last, drop_path=0.0)
        net = _net(cfg)
        formats: list[tuple[bool, bool]] = []

        def record_format(module, inputs, out, formats=formats):
            formats.append((out.is_contiguous(memory_format=torch.channels_last), out.is_contiguous()))

        net.cells[0].register_forward_hook(record_format)
        history = train_final(net, cfg, train_set, seed=0)
        assert formats and all(f == (channels_last, not channels_last) for f in formats)
        aux_conv = net.auxiliary_head.features[5].weight  # (768, 128, 2, 2): unambiguous layout
        assert aux_conv.is_contiguous(memory_format=torch.channels_last) == channels_last
        results.append((history, {k: v.detach().clone() for k, v in net.state_dict().items()}))
    (h0, p0), (h1, p1) = results
    assert [r["train_loss"] for r in h0] == pytest.approx([r["train_loss"] for r in h1], rel=1e-4)
    for k in p0:
        torch.testing.assert_close(p1[k], p0[k], rtol=1e-3, atol=1e-4, msg=k)


@pytest.mark.parametrize("channels_last", [False, True])
def test_training_resume_equals_uninterrupted(tmp_path, channels_last):
    """Stopped after epoch 1 and resumed from the checkpoint, training ends with the same weights and history as
    one uninterrupted run (RNG state, optimizer momentum and drop-path schedule are all restored)."""
    train_set = ImageDataset(_split(24), [0.5], [0.25], augment=True, crop_padding=2, hflip=True, cutout=2)
    cfg = _cfg(channels_last=channels_last)
    full = _net(cfg)
    h_full = train_final(full, cfg, train_set, seed=3)

    ckpt = tmp_path / "train.pt"
    part = _net(cfg)
    train_final(part, cfg, train_set, seed=3, checkpoint_path=ckpt, stop_after_epochs=1)
    assert ckpt.exists()
    resumed = _net(cfg, seed=99)  # different init: every weight must come from the checkpoint
    torch.manual_seed(12345)  # the RNG state must come from the checkpoint too
    h_resumed = train_final(resumed, cfg, train_set, seed=3, checkpoint_path=ckpt)
    assert [r["epoch"] for r in h_resumed] == [0, 1]
    for a, b in zip(h_full, h_resumed, strict=True):  # every record equal but the wall time
        assert {k: v for k, v in a.items() if k != "time_s"} == {k: v for k, v in b.items() if k != "time_s"}
    full_state, resumed_state = full.state_dict(), resumed.state_dict()
    assert list(full_state) == list(resumed_state)
    for k, a in full_state.items():
        assert torch.equal(a, resumed_state[k]), k


def test_images_resized_once_equal_per_sample_resize():
    """Resizing the whole split at construction gives what resizing each normalised sample would."""
    from torchvision.transforms import v2

    split = _split(5000, side=28)  # more than one 4096-image chunk
    data = ImageDataset(split, [0.3], [0.2], image_size=14)
    assert data.resized is not None and data.resized.shape == (5000, 1, 14, 14)
    for i in [0, 1, 4095, 4096, 4999]:
        x, label, index = data[i]
        expected = v2.functional.resize((split.images[i].float() / 255.0 - 0.3) / 0.2, [14, 14], antialias=True)
        assert x.shape == (1, 14, 14) and label == int(split.labels[i]) and index == i
        torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-5)
    native = ImageDataset(split, [0.3], [0.2], image_size=28)
    assert native.resized is None and native[0][0].shape == (1, 28, 28)
