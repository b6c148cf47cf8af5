"""The fused supernet (itnas/fused.py) computes the same maths as the reference cells (itnas/supernet.py, one
`MixedOp` per edge): outputs, input / weight / architecture gradients, first- and second-order search steps, over
every registered space x method x base, in float64; `none` is exactly zero; and a search step dispatches at most
10,000 aten ops at the DARTS paper size (issue 16: the reference dispatched ~40,000, as the public DARTS code)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import itnas.fused
import itnas.ops
from itnas.arch import ArchState
from itnas.config import SearchConfig
from itnas.fused import FusedCell, plan_waves
from itnas.methods import list_methods
from itnas.opcount import count_ops
from itnas.samplers import ArchSampler
from itnas.search import arch_step, build_search_model, make_search_optimizers, weight_step
from itnas.spaces import create_space, list_spaces
from itnas.supernet import SearchModel, create_search_model, fuse_cells_
from itnas.unrolled import unrolled_arch_grads

TOL = 1e-12  # float64, absolute: the fused sums differ from the reference's only in their order (outputs, input,
# alpha and weight gradients over every case: <= 4e-15)
BASES = ("darts", "pcdarts")


def _reference_and_fused(space: str, method: str, base: str, seed: int = 0) -> tuple[SearchModel, SearchModel]:
    """(reference supernet, the fused supernet made from it), float64, train mode, random architecture."""
    torch.manual_seed(seed)
    layers = 1 if space == "nb201" else 3  # DARTS-like: normal, reduce, normal cells
    ref = create_search_model(create_space(space), method, base, C=8, layers=layers, num_classes=5, partial_k=4,
                              fused=False).double()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in ref.arch_parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    fused = copy.deepcopy(ref)
    fuse_cells_(fused.net)
    return ref.train(), fused.train()


def _grad_carrier(ref: SearchModel) -> torch.nn.Module:
    """The reference's weight gradients in the fused layout: a copy of the reference whose weights *are* its
    gradients, fused (stacking is linear); read its parameters by name. Its buffers are the reference's, fused."""
    carrier = copy.deepcopy(ref.net)
    with torch.no_grad():
        for p, source in zip(carrier.parameters(), ref.net.parameters(), strict=True):
            p.copy_(torch.zeros_like(p) if source.grad is None else source.grad)
    fuse_cells_(carrier)
    return carrier


def _stacked_grads(ref: SearchModel) -> dict[str, torch.Tensor]:
    """The reference's weight gradients in the fused layout, by name (`_grad_carrier`)."""
    return dict(_grad_carrier(ref).named_parameters())


@pytest.fixture
def no_noise(monkeypatch):
    """S4's noise op drawn as zeros in both implementations (they draw their N(0, 1) in different chunks)."""
    monkeypatch.setattr(itnas.ops.NoiseOp, "forward", lambda self, x: torch.zeros_like(x[:, :, ::self.stride,
                                                                                         ::self.stride]))
    monkeypatch.setattr(itnas.fused, "noise", lambda ref, n: ref.new_zeros(ref.shape[0], n * ref.shape[1],
                                                                           *ref.shape[2:]))


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("method", list_methods())
@pytest.mark.parametrize("space", list_spaces())
def test_fused_supernet_equals_the_reference(space, method, base, no_noise):
    ref, fused = _reference_and_fused(space, method, base)
    side = 8 if space == "nb201" else 9  # odd: the strided ops' ceil and FactorizedReduce's padding
    x = torch.randn(4, 3, side, side, dtype=torch.float64)
    y = torch.randint(0, 5, (4,))
    results = []
    for model in (ref, fused):
        xi = x.clone().requires_grad_()
        out = model(xi)
        F.cross_entropy(out, y).backward()
        results.append((out.detach(), xi.grad, [p.grad for p in model.arch_parameters()]))
    (out_r, dx_r, da_r), (out_f, dx_f, da_f) = results
    torch.testing.assert_close(out_f, out_r, rtol=1e-6, atol=TOL)
    torch.testing.assert_close(dx_f, dx_r, rtol=1e-6, atol=TOL)
    for gf, gr in zip(da_f, da_r, strict=True):
        torch.testing.assert_close(gf, gr, rtol=1e-6, atol=TOL)
    carrier = _grad_carrier(ref)
    want = dict(carrier.named_parameters())
    got = {name: p.grad for name, p in fused.net.named_parameters()}
    assert want.keys() == got.keys()
    for name, g in got.items():
        g = torch.zeros_like(want[name]) if g is None else g
        torch.testing.assert_close(g, want[name], rtol=1e-6, atol=TOL, msg=lambda m, name=name: f"{name}: {m}")
    # the batch-norm running statistics moved the same way (each shared op's once for all its edges; the
    # carrier's buffers are the reference's, fused)
    for (name, b_want), b_got in zip(carrier.named_buffers(), fused.net.buffers(), strict=True):
        if b_want.dtype.is_floating_point:
            torch.testing.assert_close(b_got, b_want, rtol=1e-6, atol=TOL, msg=lambda m, name=name: f"{name}: {m}")


def _in_channels(module: torch.nn.Module) -> int:
    return next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d)).in_channels


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_none_alone_is_exactly_zero(space):
    """alpha one-hot on `none` on every edge: every intermediate node is exactly 0 (none is never computed)."""
    _, fused = _reference_and_fused(space, "darts", "darts")
    cell = next(c for c in fused.net.cells if isinstance(c, FusedCell))
    E, K = cell.space.n_edges, cell.space.n_ops
    alpha = torch.zeros(E, K, dtype=torch.float64)
    alpha[:, cell.op_names[0].index("none")] = 1.0
    if space == "nb201":
        out = cell(torch.randn(2, cell.C, 6, 6, dtype=torch.float64), mixing=cell.mixing(alpha, None))
    else:
        s0, s1 = (torch.randn(2, _in_channels(m), 6, 6, dtype=torch.float64) for m in (cell.preprocess0,
                                                                                        cell.preprocess1))
        out = cell(s0, s1, mixing=cell.mixing(alpha, None))
    assert out.shape[0] == 2 and torch.count_nonzero(out) == 0


@pytest.mark.parametrize("base", BASES)
def test_fused_search_steps_equal_the_reference(base):
    """A first-order arch step then a weight step (SGD, Adam, grad clipping) of both supernets: the same new
    architecture parameters and (stacked) weights."""
    ref, fused = _reference_and_fused("darts", "itnas", base)
    cfg = SearchConfig.model_validate({"method": "itnas", "seed": 0,
                                       "supernet": {"space": "darts", "base": base, "C": 8, "layers": 3}})
    x, y = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(0, 5, (4,))
    xv, yv = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(0, 5, (4,))
    for model in (ref, fused):
        w_opt, a_opt = make_search_optimizers(model, cfg)
        for _ in range(2):
            arch_step(model, a_opt, (x, y), (xv, yv), "first", 0.025)
            weight_step(model, w_opt, (x, y), 5.0)
    for pf, pr in zip(fused.arch_parameters(), ref.arch_parameters(), strict=True):
        torch.testing.assert_close(pf, pr, rtol=1e-6, atol=TOL)
    carrier = copy.deepcopy(ref.net)
    fuse_cells_(carrier)
    for (name, want), got in zip(carrier.named_parameters(), fused.net.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=TOL, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_fused_second_order_gradient_equals_the_reference(space):
    """DARTS's unrolled architecture gradient (virtual step with momentum, finite-difference Hessian-vector
    product) through both supernets."""
    ref, fused = _reference_and_fused(space, "itnas", "pcdarts")
    x, y = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(0, 5, (4,))
    xv, yv = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(0, 5, (4,))
    got, want = (unrolled_arch_grads(m, (x, y), (xv, yv), xi=0.025, weight_decay=3e-4) for m in (fused, ref))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-9)  # finite differences: eps scales with 1/||grad||


def test_noise_is_fresh_standard_normal_per_edge():
    ref = torch.zeros(64, 8, 6, 6)
    a, b = itnas.fused.noise(ref, 3), itnas.fused.noise(ref, 3)
    assert a.shape == (64, 24, 6, 6) and not torch.equal(a, b)
    assert abs(a.mean().item()) < 0.02 and abs(a.std().item() - 1) < 0.02


@pytest.mark.parametrize("space", list_spaces())
def test_every_registered_space_is_fused(space):
    """Every registered space's cells are complete DAGs: the fused plan covers every edge exactly once and every
    op of every edge except `none` in exactly one term."""
    s = create_space(space)
    for cell_type in s.cell_types:
        waves = plan_waves(s.edges, s.ops[cell_type], s.n_inputs, s.n_nodes, 2, True)
        assert sorted(e for w in waves for e in w.edges) == list(range(s.n_edges))
        assert sum(w.completes for w in waves) == s.n_nodes - s.n_inputs


PAPER = {"space": "darts", "C": 16, "layers": 8}  # issue 16's size: ops per step do not depend on the batch size


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("method", ["itnas", "darts"])
def test_search_step_dispatches_at_most_10000_ops(method, base):
    """One weight step + one first-order architecture step at C=16, 8 cells, 32x32 (DARTS space): <= 10,000 aten ops
    (the reference cells: 39,109-44,807; the public DARTS code 41,102, PC-DARTS 47,138; `itnas bench`)."""
    cfg = SearchConfig.model_validate({"method": method, "seed": 0, "supernet": {**PAPER, "base": base}})
    torch.manual_seed(0)
    model = build_search_model(cfg, 10, 3).train()
    w_opt, a_opt = make_search_optimizers(model, cfg)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))

    def step():
        arch_step(model, a_opt, (x, y), (x, y), "first", 0.025)
        weight_step(model, w_opt, (x, y), 5.0)

    step()  # the optimizers' state exists from here on (their first step allocates it)
    n_ops, _ = count_ops(step)
    assert n_ops <= 10_000, f"{method} on the {base} base: {n_ops} ops per search step"


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_the_default_supernet_is_the_fused_reference(space):
    """`create_search_model` (fused by default) builds exactly the fused form of the reference cells it would have
    built: the same initial weights, stacked."""
    layers = 1 if space == "nb201" else 3
    models = []
    for fused in (True, False):
        torch.manual_seed(0)
        models.append(create_search_model(create_space(space), "itnas", "pcdarts", C=8, layers=layers, partial_k=4,
                                          fused=fused))
    fused, ref = models
    fuse_cells_(ref.net)
    assert fused.state_dict().keys() == ref.state_dict().keys()
    for (name, a), b in zip(fused.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("track_running_stats", [True, False])
@pytest.mark.parametrize("base", BASES)
def test_fused_eval_mode_equals_the_reference(base, track_running_stats):
    """Eval mode (search-val accuracy): running statistics after two train forwards, or batch statistics without
    them."""
    torch.manual_seed(0)
    ref = create_search_model(create_space("darts"), "itnas", base, C=8, layers=3, num_classes=5, partial_k=4,
                              track_running_stats=track_running_stats, fused=False).double()
    fused = copy.deepcopy(ref)
    fuse_cells_(fused.net)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        for model in (ref, fused):
            model.train()
            model(x), model(2 * x)
            model.eval()
        torch.testing.assert_close(fused(x), ref(x), rtol=1e-6, atol=TOL)


# ----------------------------------------------------------------------------------------- gdas: sampled ops only
def _gdas_state(model: SearchModel, seed: int, tau: float = 1.0):
    """A GDAS draw of `model`'s architecture from a generator seeded with `seed` (same seed, same logits: the same
    sample in two models)."""
    return model.arch.sample(ArchSampler(torch.Generator().manual_seed(seed), tau))


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("space", list_spaces())
@pytest.mark.parametrize("seed", [0, 1])
def test_fused_gdas_cell_equals_the_reference_gdas_cell(space, base, seed, no_noise):
    """The same GDAS sample in both supernets (every edge computes its sampled op only): equal outputs and input,
    architecture and weight gradients (float64, 1e-12); the reference's unsampled ops get no gradient, the fused
    rows of unsampled edges exactly zero."""
    ref, fused = _reference_and_fused(space, "gdas", base, seed)
    side = 8 if space == "nb201" else 9
    x = torch.randn(4, 3, side, side, dtype=torch.float64)
    y = torch.randint(0, 5, (4,))
    results = []
    for model in (ref, fused):
        state = _gdas_state(model, seed + 10)
        xi = x.clone().requires_grad_()
        out = model(xi, state)
        F.cross_entropy(out, y).backward()
        results.append((out.detach(), xi.grad, [p.grad for p in model.arch_parameters()], state.sampled))
    (out_r, dx_r, da_r, s_r), (out_f, dx_f, da_f, s_f) = results
    assert s_r == s_f and len(set(sum(s_r.values(), ()))) > 1  # one sample, several ops drawn
    torch.testing.assert_close(out_f, out_r, rtol=1e-6, atol=TOL)
    torch.testing.assert_close(dx_f, dx_r, rtol=1e-6, atol=TOL)
    for gf, gr in zip(da_f, da_r, strict=True):
        torch.testing.assert_close(gf, gr, rtol=1e-6, atol=TOL)
    want = _stacked_grads(ref)
    for name, p in fused.net.named_parameters():
        g = torch.zeros_like(p) if p.grad is None else p.grad
        torch.testing.assert_close(g, want[name], rtol=1e-6, atol=TOL, msg=lambda m, name=name: f"{name}: {m}")
    for cell, t in zip(ref.net.cells, getattr(ref.net, "cell_types", ["normal"] * len(ref.net.cells)), strict=True):
        if not hasattr(cell, "edges"):
            continue
        for e, mixed in enumerate(cell.edges):
            for k in mixed.active:
                grads = [p.grad for p in mixed.ops[k].parameters()]
                if k != s_r[t][e]:
                    assert all(g is None for g in grads), (t, e, k)
                else:
                    assert all(g is not None for g in grads), (t, e, k)


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_gdas_output_is_the_one_hot_supernet(space):
    """Computing only the sampled op gives the value of the full mixed op under the one-hot alpha (every op
    computed, the unsampled ones weighted by exactly 0)."""
    _, fused = _reference_and_fused(space, "gdas", "darts")
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    state = _gdas_state(fused, 3)
    with torch.no_grad():
        sampled = fused(x, state)
        full = fused(x, ArchState({t: a.detach() for t, a in state.alphas.items()}, None))
    torch.testing.assert_close(sampled, full, rtol=0, atol=TOL)


@pytest.mark.parametrize("ops,per_cell", [("nor_conv_3x3", 3), ("skip_connect", 0), ("none", 0),
                                          ("mixed", 2), (None, 6)])
def test_gdas_computes_only_the_sampled_convolutions(ops, per_cell):
    """Convolutions dispatched by one fused nb201 forward (3 cells; stem 1 + 2 residual blocks x 3 = 7 outside the
    cells): a wave runs one grouped conv per conv kind some of its edges sampled. All nor_conv_3x3: 1 per wave;
    skip / none: 0; (0,1) nor_conv_1x1, (0,2) nor_conv_3x3, the rest avg_pool: 2 kinds in wave 0 only; no sample
    (every op, alphas as darts): 2 kinds x 3 waves."""
    torch.manual_seed(0)
    model = create_search_model(create_space("nb201"), "gdas", "darts", C=8, layers=1, num_classes=5).double()
    names = model.arch.space.ops["normal"][0]
    if ops is None:
        state = model.arch()
    else:
        if ops == "mixed":
            chosen = ["nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "avg_pool_3x3", "avg_pool_3x3", "avg_pool_3x3"]
        else:
            chosen = [ops] * 6
        index = torch.tensor([names.index(n) for n in chosen])
        state = ArchState({"normal": F.one_hot(index, len(names)).double()}, None, {"normal": tuple(index.tolist())})
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        _, counts = count_ops(lambda: model(x, state))
    assert counts["convolution"] == 7 + 3 * per_cell
