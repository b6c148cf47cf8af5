"""Search spaces as data: nodes, edges, the op set of every edge, outer/inner edges and predecessors.

A cell is a DAG (docs/method.md 2.1-2.2). Node ids: input nodes first (`0..n_inputs-1`), then intermediate nodes.
Edge e = (src, dst); edges are listed in the canonical order of docs/method.md 3 (grouped by dst, then src), which
is a topological order for the inner-edge recursion: every predecessor (k, src) of (src, dst) comes first.

- outer edge: src is an input node;
- inner edge: src is an intermediate node; its predecessor edges are P(e) = {(k, src) : k < src}.

Spaces: `darts`, `nb201`, and RobustDARTS `s1`..`s4` (Zela et al., ICLR 2020). `create_space(name)` builds one;
`list_spaces()` gives the names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from .errors import UnknownNameError

__all__ = ["CELL_TYPES", "PARAMETER_FREE_OPS", "SearchSpace", "create_space", "list_spaces"]

CELL_TYPES = ("normal", "reduce")

DARTS_OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
             "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: Ops without weights (names of `itnas.ops`; here, with the op sets, so that the genotype does not import the op
#: modules); their count in the normal cell is the collapse indicator (docs/method.md 2.6).
PARAMETER_FREE_OPS = frozenset({"none", "avg_pool_3x3", "max_pool_3x3", "skip_connect", "noise"})


@dataclass(frozen=True)
class SearchSpace:
    """A cell search space.

    Attributes:
        name: registry name.
        n_inputs: input nodes (2 in the DARTS cell: c_{k-2}, c_{k-1}; 1 in NB201).
        n_nodes: all nodes, inputs included.
        edges: E edges (src, dst) in canonical (topological) order.
        ops: per cell type ("normal", "reduce"), the op names of every edge: E tuples of K names.
            Every edge has the same number K of candidate ops (true of every registered space).
        output: "concat" (concat of all intermediate nodes, DARTS) or "last" (the last node, NB201).
        edges_per_node: incoming edges kept per intermediate node when deriving (2 in DARTS); None keeps all.
        has_reduction_cell: whether the space searches a separate reduction cell.
        layout: the macro architecture its cells are stacked in ("darts": 2-input cells with reduction cells,
            `itnas.supernet.SEARCH_NETWORKS` / `itnas.networks.FINAL_NETWORKS`; "nb201": 3 residual stages).
    """

    name: str
    n_inputs: int
    n_nodes: int
    edges: tuple[tuple[int, int], ...]
    ops: dict[str, tuple[tuple[str, ...], ...]]
    output: str
    edges_per_node: int | None
    has_reduction_cell: bool
    layout: str = "darts"

    def __post_init__(self):
        for cell_type, per_edge in self.ops.items():
            if len(per_edge) != len(self.edges):
                raise ValueError(f"space {self.name}: {cell_type} has {len(per_edge)} op sets for "
                                 f"{len(self.edges)} edges")
            if len({len(o) for o in per_edge}) != 1:
                raise ValueError(f"space {self.name}: every edge needs the same number of ops")
        # Fill the cached properties now: Python 3.11's cached_property computes under an RLock, which torch.compile
        # cannot trace (a graph break in every cell of a compiled supernet forward that reads them first).
        _ = self.predecessors, self.incoming

    @property
    def n_edges(self) -> int:
        """E, the number of edges of one cell."""
        return len(self.edges)

    @property
    def n_ops(self) -> int:
        """K, candidate ops per edge."""
        return len(self.ops["normal"][0])

    @property
    def cell_types(self) -> tuple[str, ...]:
        return CELL_TYPES if self.has_reduction_cell else ("normal",)

    @property
    def intermediate_nodes(self) -> range:
        return range(self.n_inputs, self.n_nodes)

    def is_outer(self, e: int) -> bool:
        """True when edge e starts at an input node (docs/method.md 2.2)."""
        return self.edges[e][0] < self.n_inputs

    @cached_property
    def predecessors(self) -> tuple[tuple[int, ...], ...]:
        """P(e) as edge indices, for every edge e (empty for outer edges)."""
        out = []
        for e, (src, _dst) in enumerate(self.edges):
            out.append(() if self.is_outer(e) else tuple(p for p, (_, d) in enumerate(self.edges) if d == src))
        return tuple(out)

    @cached_property
    def incoming(self) -> dict[int, tuple[int, ...]]:
        """Intermediate node -> indices of its incoming edges."""
        return {j: tuple(e for e, (_, d) in enumerate(self.edges) if d == j) for j in self.intermediate_nodes}

    def edge_index(self, src: int, dst: int) -> int:
        """Index of edge (src, dst). Raises KeyError if the cell has no such edge."""
        try:
            return self.edges.index((src, dst))
        except ValueError:
            raise KeyError(f"space {self.name} has no edge ({src}, {dst}); edges: {list(self.edges)}") from None


def _dag_edges(n_inputs: int, n_nodes: int) -> tuple[tuple[int, int], ...]:
    return tuple((i, j) for j in range(n_inputs, n_nodes) for i in range(j))


def _darts_like(name: str, normal: tuple[tuple[str, ...], ...], reduce: tuple[tuple[str, ...], ...]) -> SearchSpace:
    return SearchSpace(name=name, n_inputs=2, n_nodes=6, edges=_dag_edges(2, 6),
                       ops={"normal": normal, "reduce": reduce},
                       output="concat", edges_per_node=2, has_reduction_cell=True)


def _same_ops(ops: tuple[str, ...], n_edges: int = 14) -> tuple[tuple[str, ...], ...]:
    return tuple(ops for _ in range(n_edges))


def _darts() -> SearchSpace:
    return _darts_like("darts", _same_ops(DARTS_OPS), _same_ops(DARTS_OPS))


def _nb201() -> SearchSpace:
    edges = _dag_edges(1, 4)  # (0,1),(0,2),(1,2),(0,3),(1,3),(2,3)
    return SearchSpace(name="nb201", n_inputs=1, n_nodes=4, edges=edges, ops={"normal": _same_ops(NB201_OPS, 6)},
                       output="last", edges_per_node=None, has_reduction_cell=False, layout="nb201")


_ABBR = {"skip": "skip_connect", "sep3": "sep_conv_3x3", "sep5": "sep_conv_5x5", "dil3": "dil_conv_3x3",
         "dil5": "dil_conv_5x5", "max3": "max_pool_3x3", "avg3": "avg_pool_3x3"}


def _s1() -> SearchSpace:
    # RobustDARTS S1 (docs/method.md 3): two ops per edge, canonical edge order.
    normal = ("skip dil3|skip dil5|skip dil5|skip sep3|skip dil3|max3 skip|skip sep3|skip sep3|skip dil3|skip sep3|"
              "max3 skip|skip dil3|dil3 dil5|dil3 dil5")
    reduce = ("max3 avg3|max3 dil3|max3 avg3|max3 avg3|skip dil5|max3 avg3|max3 sep3|skip dil3|skip dil5|max3 avg3|"
              "max3 avg3|skip dil5|skip dil5|skip dil5")

    def parse(s: str) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(_ABBR[a] for a in edge.split()) for edge in s.split("|"))

    return _darts_like("s1", parse(normal), parse(reduce))


def _s2() -> SearchSpace:
    ops = ("skip_connect", "sep_conv_3x3")
    return _darts_like("s2", _same_ops(ops), _same_ops(ops))


def _s3() -> SearchSpace:
    ops = ("none", "skip_connect", "sep_conv_3x3")
    return _darts_like("s3", _same_ops(ops), _same_ops(ops))


def _s4() -> SearchSpace:
    ops = ("noise", "sep_conv_3x3")
    return _darts_like("s4", _same_ops(ops), _same_ops(ops))


_SPACES: dict[str, Callable[[], SearchSpace]] = {
    "darts": _darts, "nb201": _nb201, "s1": _s1, "s2": _s2, "s3": _s3, "s4": _s4,
}


def list_spaces() -> list[str]:
    """Names of the registered search spaces."""
    return list(_SPACES)


def create_space(name: str) -> SearchSpace:
    """Build search space `name`.

    Raises:
        KeyError: unknown name; the message lists the valid ones.
    """
    try:
        return _SPACES[name]()
    except KeyError:
        raise UnknownNameError(f"unknown search space {name!r}; valid spaces: {', '.join(list_spaces())}") from None
