"""Precision of the search and of the final training (itnas.engine.Precision; docs/method.md 2.8): amp off changes
nothing, bf16 autocast on CPU, float32 alphas under autocast, float64 searches independent of the thread count,
channels-last searches, the fp16 loss scaler in checkpoints, and the config errors."""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from tiny_project import image_split as _split

from itnas.config import ConfigError, PrecisionConfig, PrecisionWarning, SearchConfig, resolve_dtype
from itnas.config_parse import deep_merge, parse_config
from itnas.data import ImageDataset, make_loader
from itnas.engine import Precision, RunningMetrics, cuda_backend_flags, restore_cuda_backends, run_epochs
from itnas.genotype import PUBLISHED_GENOTYPES
from itnas.networks import create_final_network
from itnas.search import SearchTask, arch_step, build_search_model, make_search_optimizers, run_search, weight_step
from itnas.train import final_train_step, make_final_optimizer, train_final
from itnas.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _data(n_train: int = 32, n_val: int = 32) -> tuple[ImageDataset, ImageDataset]:
    return ImageDataset(_split(n_train, 0), [0.5], [0.25]), ImageDataset(_split(n_val, 1), [0.5], [0.25])


def _cfg(method: str = "itnas", **blocks) -> SearchConfig:
    """A tiny search on the darts base (C=4, 3 cells, 8x8 grey images, batch 8, 2 epochs, 8 steps)."""
    base = {"method": method, "supernet": {"base": "darts", "C": 4, "layers": 3, "track_running_stats": False},
            "schedule": {"epochs": 2, "warmup_epochs": 0, "val_every": 0}, "data": {"batch_size": 8},
            "arch_optimizer": {"lr": 0.03}}
    return SearchConfig.model_validate(deep_merge(base, blocks))


def _batch(seed: int, n: int = 8, side: int = 8, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, side, side, generator=g), torch.randint(0, classes, (n,), generator=g)


def _grads(params) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in params if p.grad is not None])


# ----------------------------------------------------------------------------------------- amp off = no change
def _plain_weight_step(model, w_opt, batch, grad_clip):
    """The weight step as it was before precision existed (no autocast, no scaler, no cast)."""
    x, y = batch
    with torch.no_grad():
        state = model.arch()
    w_opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x, state), y)
    loss.backward()
    nn.utils.clip_grad_norm_(model.weight_parameters(), grad_clip)
    w_opt.step()
    return loss.detach()


@pytest.mark.parametrize("method", ["itnas", "darts"])
def test_amp_off_search_steps_are_bitwise_the_plain_steps(method):
    """SearchTask.step with the default precision (amp off, float32, contiguous) computes bit for bit what the plain
    steps compute: same losses, same weights, architecture and optimizer moments after 4 search steps. Fails if the
    default path casts, autocasts, scales or reorders anything."""
    cfg = _cfg(method)
    torch.manual_seed(0)
    model = build_search_model(cfg, 3, 1)
    ref = copy.deepcopy(model)
    task = SearchTask(cfg, model, None, None, torch.device("cpu"), make_loader)
    assert task.precision.is_default and task.state_dict().keys() == {"model", "w_opt", "a_opt"}
    task.search_arch = True
    w_ref, a_ref = make_search_optimizers(ref, cfg)
    w = cfg.weight_optimizer
    for step in range(4):
        (x, y), (xv, yv) = _batch(2 * step), _batch(2 * step + 1)
        task.val_iter = iter([(xv, yv, None)])
        metrics = RunningMetrics(torch.device("cpu"))
        task.step((x, y, None), metrics)
        arch_step(ref, a_ref, (x, y), (xv, yv), "first", w.lr, w_ref, w.weight_decay, w.momentum)
        loss_ref = _plain_weight_step(ref, w_ref, (x, y), w.grad_clip)
        assert torch.equal(metrics.last_loss, loss_ref)
    for (name, a), b in zip(model.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for opt, opt_ref in ((task.w_opt, w_ref), (task.a_opt, a_ref)):
        for s, s_ref in zip(opt.state.values(), opt_ref.state.values(), strict=True):
            assert all(torch.equal(s[k], s_ref[k]) for k in s)


def test_amp_off_final_step_is_bitwise_the_plain_step():
    cfg = TrainConfig(epochs=1, network={"C": 4, "layers": 3, "auxiliary": True}, regularization={"drop_path": 0.0})
    torch.manual_seed(0)
    net = create_final_network(PUBLISHED_GENOTYPES["darts_v2"], 4, 3, 3, True, 1)
    ref = copy.deepcopy(net)
    opt, opt_ref = make_final_optimizer(net, cfg), make_final_optimizer(ref, cfg)
    for step in range(3):
        x, y = _batch(step)
        loss, _ = final_train_step(net, opt, (x, y), cfg, precision=Precision())
        logits, aux = ref(x)
        loss_ref = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
        opt_ref.zero_grad(set_to_none=True)
        loss_ref.backward()
        nn.utils.clip_grad_norm_(ref.parameters(), cfg.optimizer.grad_clip)
        opt_ref.step()
        assert torch.equal(loss, loss_ref.detach())
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values(), strict=True))


# ----------------------------------------------------------------------------------------- bf16 autocast on CPU
# "measured": the values these tests compute, printed once on the 2-core AMD EPYC (torch 2.14.1)
BF16_LOSS_RTOL = 1e-2  # measured 2.4e-4 (itnas, darts base, C=8, 3 cells, 16x16, batch 16)
BF16_GRAD_RTOL = 0.35  # ||g_bf16 - g_fp32|| / ||g_fp32||: measured 0.157 (bf16 keeps 8 bits: ~0.4 % per op)
BF16_GRAD_MIN_COS = 0.95  # cosine between the two gradients: measured 0.988


def test_bf16_weight_step_on_cpu_is_close_to_float32():
    cfg = _cfg("itnas", supernet={"C": 8})
    torch.manual_seed(0)
    model = build_search_model(cfg, 10, 3)
    x, y = _batch(1, n=16, side=16, classes=10)
    x = x.expand(16, 3, 16, 16).contiguous()
    out = {}
    for amp in ("off", "bf16"):
        m = copy.deepcopy(model)
        w_opt, _ = make_search_optimizers(m, cfg)
        loss, logits = weight_step(m, w_opt, (x, y), 1e9, precision=Precision("cpu", amp))
        out[amp] = loss, logits.dtype, _grads(m.weight_parameters())
        assert all(p.dtype == torch.float32 for p in m.parameters())  # master weights stay float32
    (l32, t32, g32), (l16, t16, g16) = out["off"], out["bf16"]
    assert (t32, t16) == (torch.float32, torch.bfloat16)  # the forward really ran in bf16
    assert torch.isfinite(l16) and torch.isfinite(g16).all() and g16.dtype == torch.float32
    assert abs(l16 - l32) / l32 < BF16_LOSS_RTOL
    assert (g16 - g32).norm() / g32.norm() < BF16_GRAD_RTOL
    assert F.cosine_similarity(g16, g32, dim=0) > BF16_GRAD_MIN_COS


def test_bf16_final_step_on_cpu_is_close_to_float32():
    cfg = TrainConfig(epochs=1, network={"C": 4, "layers": 3, "auxiliary": True}, regularization={"drop_path": 0.0},
                      amp="bf16")
    torch.manual_seed(0)
    net = create_final_network(PUBLISHED_GENOTYPES["darts_v2"], 4, 3, 3, True, 1)
    x, y = _batch(0, n=16, side=16)
    losses = {}
    for amp in ("off", "bf16"):
        m = copy.deepcopy(net)
        loss, logits = final_train_step(m, make_final_optimizer(m, cfg), (x, y), cfg, precision=Precision("cpu", amp))
        losses[amp] = loss
        assert torch.isfinite(loss) and logits.dtype == (torch.float32 if amp == "off" else torch.bfloat16)
    assert abs(losses["bf16"] - losses["off"]) / losses["off"] < BF16_LOSS_RTOL


def test_alphas_and_architecture_stay_float32_under_bf16():
    """The alphas are computed outside autocast (transitions and attention use bmm / matmul, which autocast would
    run in bf16), also when the model computes them itself inside an autocast region; after bf16 search steps the
    architecture parameters, their gradients and Adam moments are float32."""
    cfg = _cfg("itnas", precision={"amp": "bf16"})
    torch.manual_seed(0)
    model = build_search_model(cfg, 3, 1)
    seen = []
    model.net.register_forward_pre_hook(lambda mod, args: seen.append(args[1].alphas))
    x, _ = _batch(0)
    with torch.no_grad():
        exact = model.arch().alphas
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(x)  # state computed inside the model, autocast disabled around it
            rounded = model.arch().alphas  # what autocast does to the inner edges (bmm, matmul in bf16)
    assert all(torch.equal(seen[0][t], exact[t]) for t in exact)
    assert any(not torch.equal(rounded[t], exact[t]) for t in exact)
    train, val = _data(16, 16)
    task = SearchTask(cfg, model, train, val, torch.device("cpu"), make_loader)
    run_epochs(task, 0.025, 0.001, 1, torch.device("cpu"))
    assert len(seen) > 1 and all(a.dtype == torch.float32 for alphas in seen for a in alphas.values())
    for p in model.arch_parameters():
        state = task.a_opt.state[p]
        assert p.dtype == p.grad.dtype == state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.float32


def test_second_order_arch_step_ignores_amp():
    """The architecture step never autocasts (first or second order): with bf16 the unrolled step gives exactly the
    float32 architecture gradient."""
    grads = {}
    for amp in ("off", "bf16"):
        cfg = _cfg("itnas", arch_optimizer={"order": "second"}, precision={"amp": amp})
        torch.manual_seed(0)
        model = build_search_model(cfg, 3, 1)
        task = SearchTask(cfg, model, None, None, torch.device("cpu"), make_loader)
        task.search_arch, task.val_iter = True, iter([(*_batch(1), None)])
        task.step((*_batch(0), None), RunningMetrics(torch.device("cpu")))
        grads[amp] = _grads(model.arch_parameters())
    assert grads["off"].dtype == torch.float32 and torch.equal(grads["off"], grads["bf16"])


# ----------------------------------------------------------------------------------------- float64
F64_THREADS_ATOL = 1e-12  # measured by the test below: 0 (bitwise equal) on both bases; float32 differs by 4.5e-8


_F64_SCRIPT = """
import json, sys
import torch
sys.path[:0] = json.loads(sys.argv[2])
from test_precision import _cfg, _data
from itnas.search import run_search
cfg = _cfg("itnas", precision={"dtype": sys.argv[1]}, schedule={"epochs": 1})
out = {}
for n in (1, 2):
    torch.set_num_threads(n)
    r = run_search(cfg, *_data(32, 32), 3, 1)
    out[n] = {"genotype": r.history[-1]["genotype"], "alphas": r.history[-1]["alphas"],
              "dtypes": sorted({str(p.dtype) for p in r.model.parameters()})}
print(json.dumps(out))
"""


def _searches_on_1_and_2_threads(dtype: str) -> dict:
    """The tiny search with 1 and 2 intra-op threads, in a fresh process with passive OpenMP waiting: on a busy
    2-core machine, spinning OpenMP threads made the 2-thread run many times slower."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    paths = json.dumps([str(here), str(here.parent)])
    run = subprocess.run([sys.executable, "-c", _F64_SCRIPT, dtype, paths], capture_output=True, text=True, env=env,
                         timeout=600, check=True)
    return {int(k): v for k, v in json.loads(run.stdout.strip().splitlines()[-1]).items()}


@pytest.mark.slow  # a subprocess running two searches
def test_float64_search_is_float64_and_independent_of_the_thread_count():
    """A float64 search (weights, architecture, Adam moments, batches in float64) gives the same genotype and the
    same alphas (to 1e-12; measured bitwise equal) with 1 and 2 intra-op threads."""
    runs = _searches_on_1_and_2_threads("float64")
    assert runs[1]["dtypes"] == runs[2]["dtypes"] == ["torch.float64"]
    assert runs[1]["genotype"] == runs[2]["genotype"]
    for t in runs[1]["alphas"]:
        a1, a2 = (torch.tensor(runs[n]["alphas"][t], dtype=torch.float64) for n in (1, 2))
        torch.testing.assert_close(a1, a2, rtol=0, atol=F64_THREADS_ATOL)


def test_float64_supernet_is_rebuilt_in_float64():
    """The supernet rebuilt from a float64 config (as the derive stage does) is float64: loading loses no bit, and
    its alphas are float64."""
    cfg = _cfg("itnas", precision={"dtype": "float64"})
    torch.manual_seed(0)
    model = build_search_model(cfg, 3, 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 1e-9)  # below float32's resolution at these magnitudes
    rebuilt = build_search_model(cfg, 3, 1)
    rebuilt.load_state_dict(model.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.parameters(), model.parameters(), strict=True))
    with torch.no_grad():
        assert all(a.dtype == torch.float64 for a in rebuilt.arch().alphas.values())


# ----------------------------------------------------------------------------------------- channels-last
def test_channels_last_search_equals_the_contiguous_search():
    """precision.channels_last only changes the memory format (summation orders inside convolutions and batch
    norms): same alphas (to 1e-5 after 8 steps; measured 4.5e-8), and the activations really are channels-last (the
    cells' preprocessing; the fused cells mix their terms in the contiguous layout, itnas/fused.py)."""
    train, val = _data(32, 32)
    results, formats = {}, {}
    for cl in (False, True):
        cfg = _cfg("itnas", precision={"channels_last": cl})
        torch.manual_seed(cfg.seed)
        model = build_search_model(cfg, 3, 1)

        def hook(module, args, out, cl=cl):
            formats.setdefault(cl, out.is_contiguous())

        model.net.cells[1].preprocess1.register_forward_hook(hook)
        task = SearchTask(cfg, model, train, val, torch.device("cpu"), make_loader)
        run_epochs(task, 0.025, 0.001, 2, torch.device("cpu"))
        with torch.no_grad():
            results[cl] = model.arch().alphas
    assert formats == {False: True, True: False}
    for t in results[False]:
        torch.testing.assert_close(results[True][t], results[False][t], rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------- fp16 loss scaler
def test_fp16_scaler_state_is_checkpointed_and_resumed(tmp_path):
    """fp16 (run here on CPU, which autocasts fp16 too; the config refuses it on CPU for speed): the GradScaler's
    state is part of the checkpoint, and a resumed run equals an uninterrupted one, scaler included."""
    cfg = _cfg("darts", precision={"amp": "fp16"})
    train, val = _data(32, 32)

    def task() -> SearchTask:
        torch.manual_seed(cfg.seed)
        model = build_search_model(cfg, 3, 1)
        return SearchTask(cfg, model, train, val, torch.device("cpu"), make_loader,
                          precision=Precision("cpu", "fp16"))

    full = task()
    run_epochs(full, 0.025, 0.001, 2, torch.device("cpu"))
    ck = tmp_path / "search.pt"
    part = task()
    run_epochs(part, 0.025, 0.001, 2, torch.device("cpu"), ck, stop_after_epochs=1)
    saved = torch.load(ck, weights_only=False)["state"]["scaler"]
    assert saved == part.precision.scaler.state_dict() and saved["scale"] > 1  # a real scale, tracked per step
    resumed = task()
    run_epochs(resumed, 0.025, 0.001, 2, torch.device("cpu"), ck)
    assert resumed.precision.scaler.state_dict() == full.precision.scaler.state_dict()
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_scaler_state_round_trips_in_isolation():
    p, q = Precision("cpu", "fp16"), Precision("cpu", "fp16")
    p.scaler.scale(torch.ones(()))  # the scale is created lazily, at the first scaled loss
    p.scaler.update(1024.0)  # a chosen scale: a fresh scaler must take it over
    q.load_state_dict(p.state_dict())
    assert q.scaler.get_scale() == 1024.0 and Precision().state_dict() == {}


# ----------------------------------------------------------------------------------------- config errors
def test_fp16_on_cpu_is_an_error_naming_the_key():
    train, val = _data(16, 16)
    with pytest.raises(ConfigError, match=r"search\.precision\.amp='fp16' needs a CUDA device"):
        run_search(_cfg(precision={"amp": "fp16"}), train, val, 3, 1)
    cfg = TrainConfig(epochs=1, network={"C": 4, "layers": 3}, amp="fp16")
    with pytest.raises(ConfigError, match=r"train\.amp='fp16' needs a CUDA device"):
        train_final(create_final_network(PUBLISHED_GENOTYPES["darts_v2"], 4, 3, 3, True, 1), cfg, train)


def test_precision_config_errors_are_named():
    with pytest.raises(ConfigError, match=r"search\.precision.*amp='bf16'.*dtype='float64'"):
        parse_config(SearchConfig, {"precision": {"amp": "bf16", "dtype": "float64"}}, "search")
    with pytest.raises(ConfigError, match=r"search\.precision\.amp='fp32': Input should be 'off', 'bf16' or 'fp16'"):
        parse_config(SearchConfig, {"precision": {"amp": "fp32"}}, "search")
    with pytest.raises(ConfigError, match=r"search\.precision\.dtype='float16'"):
        parse_config(SearchConfig, {"precision": {"dtype": "float16"}}, "search")
    with pytest.raises(ConfigError, match=r"train\.amp='yes'"):
        parse_config(TrainConfig, {"amp": "yes"}, "train")
    # YAML 1.1 reads an unquoted `off` as False: it means "off"
    assert parse_config(SearchConfig, {"precision": {"amp": False}}, "search").precision.amp == "off"
    assert parse_config(TrainConfig, {"amp": False}, "train").amp == "off"
    assert PrecisionConfig() == PrecisionConfig(amp="off", dtype="float32", channels_last=False, tf32=False,
                                                deterministic=False)
    auto = parse_config(SearchConfig, {"precision": {"amp": "bf16", "dtype": "auto"}}, "search")
    assert auto.precision.dtype == "auto"


# ----------------------------------------------------------------------------------------- precision by device
def _default_params() -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params["search"]["precision"]["dtype"] == "auto"  # the default this section is about
    return params


def _search_config(params: dict, benchmark: str, method: str, seed: int, device):
    from itnas.params import Params

    return Params.from_dict(params).search_config(benchmark, method, seed, device)


def test_default_params_resolve_to_float32_on_cuda_without_a_gpu():
    """The default params.yaml's search (dtype auto) resolved for a CUDA device is float32, silently: pure config
    resolution, no GPU needed. The benchmarks that pin float32 stay float32; the identity stores float32."""
    from itnas.params import Params
    from pipeline.common import chain_identity

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns
        params = Params.from_dict(_default_params())
        for device in ("cuda", "cuda:1", torch.device("cuda", 0)):
            for benchmark, method, seed in params.chains():
                p = params.search_config(benchmark, method, seed, device).precision
                assert (p.dtype, p.amp, p.tf32, p.deterministic) == ("float32", "off", False, False)
        for benchmark in ("nb201", "cifar10"):  # explicit float32 (their committed results)
            assert params.search_config(benchmark, "itnas", 0, "cuda").precision.dtype == "float32"
        identity = chain_identity(params, "search", params.chain("fmnist", "itnas", 0, "cuda"))
        assert identity["config"]["precision"]["dtype"] == "float32"


def test_explicit_float64_on_cuda_warns_and_is_kept():
    params = _default_params()
    params["search"]["precision"]["dtype"] = "float64"
    with pytest.warns(PrecisionWarning, match=r"search\.precision\.dtype='float64' on cuda: float64 is slow on GPUs"):
        cfg = _search_config(params, "fmnist", "itnas", 0, "cuda")
    assert cfg.precision.dtype == "float64"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # on a CPU float64 is the intended choice: no warning
        assert _search_config(params, "fmnist", "itnas", 0, "cpu").precision.dtype == "float64"


def test_cpu_resolution_stays_float64_and_is_the_float64_run():
    """On a CPU the default resolves to float64, and the resolved config (what the checkpoint identity and the
    outputs store) is exactly that of the former `dtype: float64` params: a CPU run is the same run as before."""
    from itnas.params import Params

    params = Params.from_dict(_default_params())
    raw = _default_params()
    raw["search"]["precision"]["dtype"] = "float64"
    explicit = Params.from_dict(raw)
    for benchmark, method, seed in params.chains():
        cfg = params.search_config(benchmark, method, seed, "cpu")
        assert cfg.precision.dtype == "float64"
        assert cfg.model_dump(mode="json") == explicit.search_config(benchmark, method, seed, "cpu").model_dump(
            mode="json")
    for benchmark in ("nb201", "cifar10"):
        assert params.search_config(benchmark, "darts", 0, "cpu").precision.dtype == "float32"


def test_resolve_dtype_rules():
    assert [resolve_dtype("auto", "off", d) for d in ("cpu", "cuda", "cuda:3", "mps")] == [
        "float64", "float32", "float32", "float32"]
    assert [resolve_dtype("auto", amp, "cpu") for amp in ("bf16", "fp16")] == ["float32", "float32"]  # amp: float32
    assert resolve_dtype("float32", "off", "cpu") == "float32" and resolve_dtype("float64", "off", "cpu") == "float64"
    with pytest.warns(PrecisionWarning, match=r"train\.x='float64' on cuda"):
        assert resolve_dtype("float64", "off", torch.device("cuda", 1), key="train.x") == "float64"
    with pytest.raises(ValueError, match="resolve the config first"):
        build_search_model(_cfg(precision={"dtype": "auto"}), 3, 1)


def test_auto_search_on_cpu_is_the_float64_search(tmp_path):
    """run_search with dtype auto on a CPU searches in float64 and stores "float64" in its checkpoint identity; its
    alphas are bitwise those of the explicit float64 search. tf32 / deterministic (CUDA only) change nothing on a
    CPU: neither the result nor the process's backend flags."""
    before = cuda_backend_flags()
    train, val = _data(16, 16)
    alphas = {}
    for dtype in ("auto", "float64"):
        cfg = _cfg("itnas", precision={"dtype": dtype, "tf32": True, "deterministic": True}, schedule={"epochs": 1})
        ck = tmp_path / f"{dtype}.pt"
        r = run_search(cfg, train, val, 3, 1, "cpu", ck, stop_after_epochs=1)
        assert {p.dtype for p in r.model.parameters()} == {torch.float64}
        assert torch.load(ck, weights_only=False)["config"]["config"]["precision"]["dtype"] == "float64"
        alphas[dtype] = r.history[-1]["alphas"]
    assert alphas["auto"] == alphas["float64"]
    assert cuda_backend_flags() == before


def test_backend_policy_is_set_by_the_runs_at_start(monkeypatch):
    """Search and final training call `Precision.configure_backends` once, when they start, with the config's
    device, tf32 and deterministic."""
    calls = []
    original = Precision.configure_backends

    def record(self):
        calls.append((str(self.device), self.tf32, self.deterministic))
        return original(self)

    monkeypatch.setattr(Precision, "configure_backends", record)
    train, val = _data(16, 16)
    run_search(_cfg(precision={"tf32": True}, schedule={"epochs": 1}), train, val, 3, 1)
    assert calls == [("cpu", True, False)]
    cfg = TrainConfig(epochs=1, network={"C": 4, "layers": 3}, data={"batch_size": 8}, deterministic=True)
    train_final(create_final_network(PUBLISHED_GENOTYPES["darts_v2"], 4, 3, 3, True, 1), cfg, train)
    assert calls[1:] == [("cpu", False, True)]


def test_cuda_backend_policy_without_a_gpu(monkeypatch):
    """The CUDA policy as flags (settable without a GPU): float32 = IEEE float32 (TF32 off in cuBLAS and cuDNN) and
    cuDNN autotuning; tf32 / deterministic opt in. On a CPU nothing changes. Every flag is restored afterwards."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = cuda_backend_flags()
    try:
        assert Precision("cpu", tf32=True, deterministic=True).configure_backends() is None
        assert cuda_backend_flags() == before
        assert Precision("cuda").configure_backends() == before
        assert cuda_backend_flags() == {"matmul_allow_tf32": False, "cudnn_allow_tf32": False, "cudnn_benchmark": True,
                                        "cudnn_deterministic": False, "deterministic_algorithms": False,
                                        "deterministic_warn_only": True}
        Precision("cuda:0", "bf16", tf32=True, deterministic=True).configure_backends()
        assert cuda_backend_flags() == {"matmul_allow_tf32": True, "cudnn_allow_tf32": True, "cudnn_benchmark": False,
                                        "cudnn_deterministic": True, "deterministic_algorithms": True,
                                        "deterministic_warn_only": True}
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        restore_cuda_backends(before)
    assert cuda_backend_flags() == before


@pytest.mark.slow  # a fresh Python process
def test_importing_the_library_sets_no_backend_flag():
    """No global state at import: importing every module that runs searches and trainings leaves torch's backend
    flags as torch set them (checked in a fresh process)."""
    code = ("import torch\nb = torch.backends\n"
            "def flags():\n"
            "    return (b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.benchmark, b.cudnn.deterministic,\n"
            "            torch.are_deterministic_algorithms_enabled())\n"
            "f = flags()\n"
            "import itnas.search, itnas.train, itnas.engine, pipeline.common, pipeline.search, pipeline.evaluate\n"
            "assert flags() == f == (False, True, False, False, False), (f, flags())\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
