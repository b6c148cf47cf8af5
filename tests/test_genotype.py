"""Genotype (itnas/genotype.py): validation against the space, JSON and NB201-string round trips, collapse count."""

from __future__ import annotations

import json

import pytest
import torch

from itnas.derive import derive_from_alphas
from itnas.genotype import PUBLISHED_GENOTYPES, Genotype, GenotypeError
from itnas.spaces import DARTS_OPS, create_space, list_spaces

NB201_STRING = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
DARTS_V2 = PUBLISHED_GENOTYPES["darts_v2"]


def _random_alphas(space, seed):
    g = torch.Generator().manual_seed(seed)
    return {t: torch.softmax(3 * torch.randn(space.n_edges, space.n_ops, generator=g), -1) for t in space.cell_types}


# ---------------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", sorted(PUBLISHED_GENOTYPES))
def test_published_json_round_trip(name, tmp_path):
    g = PUBLISHED_GENOTYPES[name]
    assert Genotype.from_json(g.to_json()) == g
    assert Genotype.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    path = tmp_path / "genotype.json"
    g.save(path)
    assert Genotype.load(path) == g
    d = json.loads(path.read_text())
    assert d["space"] == "darts" and d["normal_concat"] == [2, 3, 4, 5] and d["reduce_concat"] == [2, 3, 4, 5]
    assert len(d["normal"]) == 8 and len(d["reduce"]) == 8


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("space_name", list_spaces())
def test_derived_json_round_trip(space_name, seed):
    space = create_space(space_name)
    g = derive_from_alphas(space, _random_alphas(space, seed))
    back = Genotype.from_json(g.to_json())
    assert back == g
    assert back.to_dict() == g.to_dict()
    n_edges = 8 if space.n_inputs == 2 else 6
    assert len(back.normal) == n_edges
    if space_name == "nb201":
        assert back.reduce == () and "reduce" not in back.to_dict()
        assert Genotype.from_nb201_string(g.to_nb201_string()) == g
    else:
        assert len(back.reduce) == 8


def test_darts_v2_contents():
    """The DARTS repo's (op, input) pairs converted to (op, src, dst): nodes 2..5 get two inputs each."""
    assert DARTS_V2.normal == (
        ("sep_conv_3x3", 0, 2), ("sep_conv_3x3", 1, 2), ("sep_conv_3x3", 0, 3), ("sep_conv_3x3", 1, 3),
        ("skip_connect", 0, 4), ("sep_conv_3x3", 1, 4), ("skip_connect", 0, 5), ("dil_conv_3x3", 2, 5))
    assert DARTS_V2.reduce == (
        ("max_pool_3x3", 0, 2), ("max_pool_3x3", 1, 2), ("max_pool_3x3", 1, 3), ("skip_connect", 2, 3),
        ("max_pool_3x3", 0, 4), ("skip_connect", 2, 4), ("max_pool_3x3", 1, 5), ("skip_connect", 2, 5))


def test_canonical_order_is_independent_of_input_order():
    shuffled = Genotype("darts", tuple(reversed(DARTS_V2.normal)), (2, 3, 4, 5), DARTS_V2.reduce[::-1], (2, 3, 4, 5))
    assert shuffled == DARTS_V2


# ---------------------------------------------------------------------------------------------------- validation
def _with_normal(edges, concat=(2, 3, 4, 5)):
    return Genotype("darts", tuple(edges), concat, DARTS_V2.reduce, DARTS_V2.reduce_concat)


def test_op_not_in_space():
    edges = list(DARTS_V2.normal)
    edges[0] = ("conv_7x7", 0, 2)
    with pytest.raises(GenotypeError) as exc:
        _with_normal(edges).validate()
    msg = str(exc.value)
    assert "conv_7x7" in msg
    valid = msg.split("valid ops: ")[1].split(", ")
    assert valid == [op for op in DARTS_OPS if op != "none"]  # a DARTS cell never keeps `none`


def test_op_not_allowed_on_that_edge_of_s1():
    # S1 normal edge (0,2) allows [skip_connect, dil_conv_3x3] only
    g = derive_from_alphas(create_space("s1"), _random_alphas(create_space("s1"), 0))
    edges = [("sep_conv_3x3", s, d) if (s, d) == (0, 2) else (o, s, d) for o, s, d in g.normal]
    assert ("sep_conv_3x3", 0, 2) in edges
    bad = Genotype("s1", tuple(edges), g.normal_concat, g.reduce, g.reduce_concat)
    with pytest.raises(GenotypeError) as exc:
        bad.validate()
    msg = str(exc.value)
    assert "sep_conv_3x3" in msg and "skip_connect" in msg and "dil_conv_3x3" in msg and "(0, 2)" in msg


def test_edge_not_in_space():
    edges = list(DARTS_V2.normal)
    edges[0] = ("sep_conv_3x3", 3, 2)  # backwards edge
    with pytest.raises(GenotypeError) as exc:
        _with_normal(edges).validate()
    assert "(3, 2)" in str(exc.value)


def test_node_with_three_inputs():
    edges = list(DARTS_V2.normal) + [("sep_conv_3x3", 1, 5)]
    with pytest.raises(GenotypeError) as exc:
        _with_normal(edges).validate()
    assert "node 5" in str(exc.value) and "3" in str(exc.value)


def test_node_with_one_input():
    edges = [e for e in DARTS_V2.normal if e != ("dil_conv_3x3", 2, 5)]
    with pytest.raises(GenotypeError, match="node 5"):
        _with_normal(edges).validate()


def test_repeated_edge():
    edges = [e for e in DARTS_V2.normal if e != ("skip_connect", 0, 5)] + [("sep_conv_3x3", 2, 5)]
    with pytest.raises(GenotypeError, match="twice"):
        _with_normal(edges).validate()


def test_wrong_concat():
    with pytest.raises(GenotypeError) as exc:
        _with_normal(DARTS_V2.normal, concat=(2, 3, 4)).validate()
    assert "normal_concat" in str(exc.value)
    bad = Genotype("darts", DARTS_V2.normal, DARTS_V2.normal_concat, DARTS_V2.reduce, (3, 4, 5))
    with pytest.raises(GenotypeError, match="reduce_concat"):
        bad.validate()


def test_unknown_space():
    with pytest.raises(GenotypeError) as exc:
        Genotype("nasnet", DARTS_V2.normal, (2, 3, 4, 5)).validate()
    assert "nasnet" in str(exc.value) and "darts" in str(exc.value)
    d = DARTS_V2.to_dict()
    d["space"] = "nasnet"
    with pytest.raises(GenotypeError):
        Genotype.from_dict(d)


def test_nb201_genotype_with_reduce_cell_is_rejected():
    g = Genotype.from_nb201_string(NB201_STRING)
    bad = Genotype("nb201", g.normal, g.normal_concat, DARTS_V2.reduce, (2, 3, 4, 5))
    with pytest.raises(GenotypeError, match="no reduce cell"):
        bad.validate()


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2", '{"space": "darts"'])
def test_malformed_json(text):
    with pytest.raises(GenotypeError, match="not valid JSON"):
        Genotype.from_json(text)


@pytest.mark.parametrize("payload", [
    [],  # not an object
    {"space": "darts", "normal": []},  # missing normal_concat
    {"space": "darts", "normal": [], "normal_concat": [], "extra": 1},  # unknown key
    {"space": "darts", "normal": [["sep_conv_3x3", 0]], "normal_concat": [2, 3, 4, 5]},  # not a triple
    {"space": "darts", "normal": [["sep_conv_3x3", "zero", 2]], "normal_concat": [2, 3, 4, 5]},  # bad node id
])
def test_malformed_genotype_dict(payload):
    with pytest.raises(GenotypeError):
        Genotype.from_json(json.dumps(payload))


# ------------------------------------------------------------------- node ids must be integers (no truncation)
NON_INTEGER_IDS = [0.7, 1.5, 2.0, -0.3, float("nan"), True, False, "2", None]


def _darts_v2_dict_with(cell: str, index: int, field: int, value) -> dict:
    """darts_v2 as a dict with entry [index][field] of `cell` (an edge list or a concat list) set to `value`."""
    d = DARTS_V2.to_dict()
    if field is None:
        d[cell][index] = value
    else:
        d[cell][index][field] = value
    return d


@pytest.mark.parametrize("value", NON_INTEGER_IDS, ids=repr)
@pytest.mark.parametrize("cell, index, field, where", [
    ("normal", 0, 1, "normal edge #0 ['sep_conv_3x3', {v!r}, 2], src"),
    ("normal", 3, 2, "normal edge #3 ['sep_conv_3x3', 1, {v!r}], dst"),
    ("reduce", 7, 1, "reduce edge #7 ['skip_connect', {v!r}, 5], src"),
    ("normal_concat", 1, None, "normal_concat[1]"),
    ("reduce_concat", 3, None, "reduce_concat[3]"),
], ids=["normal-src", "normal-dst", "reduce-src", "normal_concat", "reduce_concat"])
def test_non_integer_node_id_is_refused(value, cell, index, field, where):
    """A float id (0.7 used to become node 0), a bool or a string is refused, naming the value and its position."""
    d = _darts_v2_dict_with(cell, index, field, value)
    want = where.format(v=value)
    with pytest.raises(GenotypeError) as exc:
        Genotype.from_dict(d)
    msg = str(exc.value)
    assert want in msg and f"node id {value!r}" in msg and "not an integer" in msg
    # the same through the constructor and through a JSON file (JSON has floats, bools, strings and null)
    with pytest.raises(GenotypeError, match="not an integer"):
        Genotype(d["space"], d["normal"], d["normal_concat"], d["reduce"], d["reduce_concat"])
    with pytest.raises(GenotypeError) as exc:
        Genotype.from_json(json.dumps(d))
    assert want in str(exc.value)


def test_integer_like_node_ids_are_accepted():
    """Integers of any integral type (e.g. numpy's) are node ids; the canonical form holds plain ints."""
    np = pytest.importorskip("numpy")
    g = Genotype("darts", tuple((op, np.int64(s), np.int32(d)) for op, s, d in DARTS_V2.normal),
                 tuple(np.int64(n) for n in DARTS_V2.normal_concat), DARTS_V2.reduce, DARTS_V2.reduce_concat)
    assert g == DARTS_V2 and all(type(x) is int for _, s, d in g.normal for x in (s, d))


@pytest.mark.parametrize("edge", [["sep_conv_3x3", 0], ["sep_conv_3x3", 0, 2, 1], "sep", 3, [3, 0, 2], [None, 0, 2]],
                         ids=repr)
def test_malformed_edge_is_refused(edge):
    d = DARTS_V2.to_dict()
    d["normal"][2] = edge
    with pytest.raises(GenotypeError):
        Genotype.from_dict(d)


# ------------------------------------------------------------------------- `none` only where every edge is kept
@pytest.mark.parametrize("space_name", ["darts", "s3"])
@pytest.mark.parametrize("cell", ["normal", "reduce"])
@pytest.mark.parametrize("edge", [0, 3, 7])  # (0,2) outer; (1,3) outer; (2,5) inner
def test_none_is_refused_in_darts_like_cells(space_name, cell, edge):
    """The DARTS rule keeps non-`none` ops only (docs/method.md 2.6): a darts/s3 genotype with `none` is refused."""
    space = create_space(space_name)
    g = derive_from_alphas(space, _random_alphas(space, 1))
    edges = list(getattr(g, cell))
    _, src, dst = edges[edge]
    edges[edge] = ("none", src, dst)
    bad = Genotype(space_name, **{**_cells(g), cell: tuple(edges)})
    with pytest.raises(GenotypeError) as exc:
        bad.validate()
    msg = str(exc.value)
    assert f"op 'none' on edge ({src}, {dst})" in msg and cell in msg and "nb201" in msg
    with pytest.raises(GenotypeError, match="'none'"):
        Genotype.from_json(bad.to_json())


def _cells(g: Genotype) -> dict:
    return {"normal": g.normal, "normal_concat": g.normal_concat, "reduce": g.reduce, "reduce_concat": g.reduce_concat}


@pytest.mark.parametrize("node", [2, 3, 4, 5])
def test_s3_node_whose_inputs_are_all_none_is_refused(node):
    """s3 has `none` among its ops; a node fed only by `none` would be constant zero."""
    space = create_space("s3")
    g = derive_from_alphas(space, _random_alphas(space, 2))
    edges = tuple(("none", s, d) if d == node else (op, s, d) for op, s, d in g.normal)
    with pytest.raises(GenotypeError, match="'none'"):
        Genotype("s3", **{**_cells(g), "normal": edges}).validate()


def test_nb201_may_keep_none():
    g = Genotype.from_nb201_string("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert [op for op, _, _ in g.normal].count("none") == 5


# ------------------------------------------------------------------------------ NB201: the output must compute
@pytest.mark.parametrize("arch", [
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",  # every edge none
    "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|none~1|none~2|",  # every input of node 3 none
    "|none~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|skip_connect~2|",  # node 3 fed by nodes 1, 2, both dead
    "|none~0|+|none~0|nor_conv_1x1~1|+|none~0|none~1|avg_pool_3x3~2|",  # node 2 fed only by dead node 1
    "|none~0|+|skip_connect~0|none~1|+|none~0|nor_conv_3x3~1|none~2|",  # node 2 computes, but its edge to 3 is none
])
def test_nb201_output_unreachable_is_reported_not_refused(arch):
    """Without a path of non-`none` edges from node 0 to node 3 the cell output is constant zero. Such cells are
    NB201 table entries (a derivation may produce one and the look-up scores it), so `validate` accepts them and
    `dead_outputs` names the dead output node."""
    g = Genotype.from_nb201_string(arch)
    assert g.dead_outputs() == [3]
    g2 = Genotype("nb201", tuple(tuple(e) for e in _nb201_edges(arch)), (3,))
    assert Genotype.from_json(g2.to_json()).dead_outputs() == [3]


def _nb201_edges(arch: str) -> list[tuple[str, int, int]]:
    return [(item.split("~")[0], int(item.split("~")[1]), dst)
            for dst, seg in enumerate(arch.split("+"), start=1) for item in filter(None, seg.split("|"))]


@pytest.mark.parametrize("arch", [
    "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",  # only the direct edge
    "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|nor_conv_1x1~1|none~2|",  # through node 1
    "|none~0|+|avg_pool_3x3~0|none~1|+|none~0|none~1|nor_conv_3x3~2|",  # through node 2, node 1 dead
])
def test_nb201_output_reachable_is_accepted(arch):
    """Dead intermediate nodes are fine as long as the output computes: these cells are NB201 table entries."""
    g = Genotype.from_nb201_string(arch)
    assert g.to_nb201_string() == arch and g.dead_outputs() == []


def test_load_names_the_file(tmp_path):
    path = tmp_path / "g.json"
    path.write_text("{oops")
    with pytest.raises(GenotypeError) as exc:
        Genotype.load(path)
    assert str(path) in str(exc.value)
    with pytest.raises(FileNotFoundError):
        Genotype.load(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------------- NB201 strings
def test_nb201_string_round_trip():
    g = Genotype.from_nb201_string(NB201_STRING)
    assert g.space == "nb201"
    assert g.normal == (("nor_conv_3x3", 0, 1), ("nor_conv_3x3", 0, 2), ("nor_conv_3x3", 1, 2),
                        ("skip_connect", 0, 3), ("nor_conv_3x3", 1, 3), ("nor_conv_3x3", 2, 3))
    assert g.normal_concat == (3,) and g.reduce == () and g.reduce_concat == ()
    assert g.to_nb201_string() == NB201_STRING
    assert Genotype.from_json(g.to_json()) == g
    assert g.collapse_count == 1


@pytest.mark.parametrize("text", [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|",  # node 3 missing
    "|nor_conv_3x3|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",  # no ~src
    "|sep_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",  # DARTS op
    "|nor_conv_3x3~x|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",  # bad src
])
def test_bad_nb201_strings(text):
    with pytest.raises(GenotypeError):
        Genotype.from_nb201_string(text)


def test_nb201_string_only_for_nb201():
    with pytest.raises(GenotypeError):
        DARTS_V2.to_nb201_string()


# ---------------------------------------------------------------------------------------------------- collapse
def test_collapse_count_counts_parameter_free_ops_of_normal_cell():
    # darts_v2: normal has 2 skip_connect; its reduce cell (8 parameter-free ops) is not counted
    assert DARTS_V2.collapse_count == 2
    # pcdarts_cifar: skip_connect (0,2) and avg_pool_3x3 (0,5)
    assert PUBLISHED_GENOTYPES["pcdarts_cifar"].collapse_count == 2
    all_skip = tuple(("skip_connect", s, d) for _, s, d in DARTS_V2.normal)
    assert _with_normal(all_skip).validate().collapse_count == 8
    pools = tuple((("max_pool_3x3", "avg_pool_3x3")[i % 2], s, d) for i, (_, s, d) in enumerate(DARTS_V2.normal))
    assert _with_normal(pools).validate().collapse_count == 8
    no_free = tuple(("sep_conv_5x5", s, d) for _, s, d in DARTS_V2.normal)
    assert _with_normal(no_free).validate().collapse_count == 0
    nb = Genotype.from_nb201_string("|none~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    assert nb.collapse_count == 4
    s4 = Genotype("s4", tuple(("noise", s, d) for _, s, d in DARTS_V2.normal), (2, 3, 4, 5),
                  tuple(("sep_conv_3x3", s, d) for _, s, d in DARTS_V2.reduce), (2, 3, 4, 5)).validate()
    assert s4.collapse_count == 8


def test_cell_string():
    assert DARTS_V2.cell_string("normal").split()[:2] == ["sep_conv_3x3(0->2)", "sep_conv_3x3(1->2)"]
