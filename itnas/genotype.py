"""The one genotype type: a discrete cell (or pair of cells), validated against its space, with a JSON round trip.

Canonical form: per cell type, a list of edges ``(op, src, dst)`` sorted by (dst, src), plus the nodes whose
outputs the cell concatenates. JSON: ``{"space": "darts", "normal": [["sep_conv_3x3", 0, 2], ...],
"normal_concat": [2, 3, 4, 5], "reduce": [...], "reduce_concat": [...]}``; NB201 genotypes have no reduction cell.
Later stages read a genotype by path (`Genotype.load`); nothing is pasted into code or parsed with `eval`.
`validate` refuses what no derivation produces and no network should be built from: node ids that are not integers,
`none` in a DARTS-like cell, and (in a trainable cell) an output node that no path of non-`none` edges reaches.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass
from pathlib import Path

from .errors import ItnasError, MissingOutputError
from .spaces import PARAMETER_FREE_OPS, SearchSpace, create_space

__all__ = ["DERIVE_MODES", "Genotype", "GenotypeError", "PUBLISHED_GENOTYPES"]

DERIVE_MODES = ("marginal", "sequential")
"""The two rules that turn a supernet's alphas into a genotype (docs/method.md 2.6, `itnas.derive`)."""

Edge = tuple[str, int, int]


class GenotypeError(ItnasError, ValueError):
    """A genotype that does not fit its search space, or a malformed genotype file."""


def _node_id(value, where: str) -> int:
    """`value` as a node id. Raises GenotypeError unless it is an integer (bools and floats such as 2.0 included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise GenotypeError(f"{where}: node id {value!r} ({type(value).__name__}) is not an integer")
    return int(value)


def _edge(edge, where: str) -> Edge:
    """`edge` as a canonical (op, src, dst) triple. Raises GenotypeError naming `where` when malformed."""
    if isinstance(edge, (str, bytes)) or not hasattr(edge, "__len__") or len(edge) != 3:
        raise GenotypeError(f"{where}: want an [op, src, dst] triple, got {edge!r}")
    op, src, dst = edge
    if not isinstance(op, str):
        raise GenotypeError(f"{where} {list(edge)!r}: op {op!r} is not a string")
    return op, _node_id(src, f"{where} {list(edge)!r}, src"), _node_id(dst, f"{where} {list(edge)!r}, dst")


@dataclass(frozen=True)
class Genotype:
    """A derived architecture.

    Attributes:
        space: search space name.
        normal / reduce: edges (op, src, dst) of the normal / reduction cell, sorted by (dst, src).
        normal_concat / reduce_concat: node ids concatenated into the cell output.
    """

    space: str
    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...] = ()
    reduce_concat: tuple[int, ...] = ()

    def __post_init__(self):
        """Canonicalise. Raises GenotypeError on a malformed edge or a node id that is not an integer."""
        for name in ("normal", "reduce"):
            edges = (_edge(e, f"{name} edge #{i}") for i, e in enumerate(getattr(self, name)))
            object.__setattr__(self, name, tuple(sorted(edges, key=lambda t: (t[2], t[1]))))
        for name in ("normal_concat", "reduce_concat"):
            ids = tuple(_node_id(n, f"{name}[{i}]") for i, n in enumerate(getattr(self, name)))
            object.__setattr__(self, name, ids)

    # ------------------------------------------------------------------ validation
    def validate(self, space: SearchSpace | None = None) -> Genotype:
        """Check the genotype fits its space; returns self.

        Raises:
            GenotypeError: unknown space, an edge absent from the space, an op not allowed on that edge
                (`none` is allowed only where the space keeps every edge, i.e. NB201: the DARTS rule never keeps
                it, docs/method.md 2.6), a repeated edge, the wrong number of inputs per node, a wrong concat list, or
                an output node that never computes (no path of non-`none` edges from an input node reaches it,
                so that part of the cell output is constant zero).
        """
        try:
            space = space or create_space(self.space)
        except KeyError as err:
            raise GenotypeError(str(err.args[0])) from None
        if space.name != self.space:
            raise GenotypeError(f"genotype is for space {self.space!r}, not {space.name!r}")
        for cell_type in ("normal", "reduce"):
            edges, concat = getattr(self, cell_type), getattr(self, f"{cell_type}_concat")
            if cell_type not in space.cell_types:
                if edges or concat:
                    raise GenotypeError(f"space {space.name} has no {cell_type} cell, but the genotype lists one")
                continue
            seen = set()
            for op, src, dst in edges:
                e = space.edges.index((src, dst)) if (src, dst) in space.edges else None
                if e is None:
                    raise GenotypeError(f"{cell_type} cell: edge ({src}, {dst}) is not in space {space.name}; "
                                        f"valid edges: {list(space.edges)}")
                if (src, dst) in seen:
                    raise GenotypeError(f"{cell_type} cell: edge ({src}, {dst}) appears twice")
                seen.add((src, dst))
                allowed = space.ops[cell_type][e]
                if space.edges_per_node is not None:  # DARTS-like cell: the derivation never keeps `none`
                    if op == "none":
                        raise GenotypeError(f"{cell_type} cell: op 'none' on edge ({src}, {dst}) of a {space.name}-"
                                            f"space cell; a kept edge carries a non-none op (docs/method.md 2.6), only "
                                            f"nb201 cells may keep 'none'")
                    allowed = tuple(o for o in allowed if o != "none")
                if op not in allowed:
                    raise GenotypeError(f"{cell_type} cell: op {op!r} not allowed on edge ({src}, {dst}); "
                                        f"valid ops: {', '.join(allowed)}")
            for j in space.intermediate_nodes:
                n_in = sum(1 for _, _, d in edges if d == j)
                want = space.edges_per_node if space.edges_per_node is not None else len(space.incoming[j])
                if n_in != want:
                    raise GenotypeError(f"{cell_type} cell: node {j} has {n_in} input edges, space {space.name} "
                                        f"needs {want}")
            want_concat = tuple(space.intermediate_nodes) if space.output == "concat" else (space.n_nodes - 1,)
            if concat != want_concat:
                raise GenotypeError(f"{cell_type}_concat must be {list(want_concat)}, got {list(concat)}")
            if space.edges_per_node is None:
                continue  # NB201: every cell is a table entry, dead outputs included (see `dead_outputs`)
            for j in self.dead_outputs(cell_type, space.n_inputs):
                inputs = " ".join(f"{op}({s}->{d})" for op, s, d in edges if d == j)
                raise GenotypeError(f"{cell_type} cell: output node {j} never computes: no path of non-none "
                                    f"edges leads to it from an input node, so it is constant zero (its inputs: "
                                    f"{inputs})")
        return self

    def dead_outputs(self, cell_type: str = "normal", n_inputs: int | None = None) -> list[int]:
        """Output nodes of `cell_type` that no path of non-`none` edges reaches from an input node: their part of
        the cell output is constant zero. A trainable (DARTS-like) genotype never has one (`validate` refuses
        it); an NB201 genotype may (such cells are table entries, with chance-level accuracy)."""
        edges, concat = getattr(self, cell_type), getattr(self, f"{cell_type}_concat")
        n_inputs = create_space(self.space).n_inputs if n_inputs is None else n_inputs
        live = set(range(n_inputs))  # nodes that compute something other than constant zero
        for j in sorted({d for _, _, d in edges}):  # ascending ids are a topological order
            if any(d == j and op != "none" and s in live for op, s, d in edges):
                live.add(j)
        return [j for j in concat if j not in live]

    # ------------------------------------------------------------------ views
    @property
    def collapse_count(self) -> int:
        """Parameter-free ops (skip, pools, none, noise) in the normal cell: the collapse indicator
        (docs/method.md 2.6)."""
        return sum(1 for op, _, _ in self.normal if op in PARAMETER_FREE_OPS)

    def to_dict(self) -> dict:
        d = {"space": self.space, "normal": [list(e) for e in self.normal], "normal_concat": list(self.normal_concat)}
        if self.reduce or self.reduce_concat:
            d["reduce"] = [list(e) for e in self.reduce]
            d["reduce_concat"] = list(self.reduce_concat)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Genotype:
        """Build and validate. Raises GenotypeError on unknown keys, bad entries, or a misfit with the space."""
        allowed = {"space", "normal", "normal_concat", "reduce", "reduce_concat"}
        if not isinstance(d, dict) or set(d) - allowed or not {"space", "normal", "normal_concat"} <= set(d):
            keys = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise GenotypeError(f"genotype needs keys space, normal, normal_concat (optional reduce, "
                                f"reduce_concat); got {keys}")
        try:
            g = cls(space=d["space"], normal=tuple(tuple(e) for e in d["normal"]),
                    normal_concat=tuple(d["normal_concat"]), reduce=tuple(tuple(e) for e in d.get("reduce", ())),
                    reduce_concat=tuple(d.get("reduce_concat", ())))
        except GenotypeError:
            raise
        except (TypeError, ValueError) as err:
            raise GenotypeError(f"malformed genotype edges (want [op, src, dst] triples): {err}") from None
        return g.validate()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise GenotypeError(f"genotype is not valid JSON: {err}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Genotype:
        """Read and validate a genotype file. Raises MissingOutputError (a FileNotFoundError), GenotypeError."""
        path = Path(path)
        if not path.exists():
            raise MissingOutputError(f"genotype file {path} does not exist (run the derive stage first)")
        try:
            return cls.from_json(path.read_text())
        except GenotypeError as err:
            raise GenotypeError(f"{path}: {err}") from None

    def cell_string(self, cell_type: str = "normal") -> str:
        """Compact one-line form, e.g. ``sep_conv_3x3(0->2) skip_connect(1->2) ...``."""
        return " ".join(f"{op}({s}->{d})" for op, s, d in getattr(self, cell_type))

    def to_nb201_string(self) -> str:
        """NAS-Bench-201 arch string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``. Raises GenotypeError if not nb201."""
        if self.space != "nb201":
            raise GenotypeError(f"only nb201 genotypes have an NB201 string, this one is {self.space!r}")
        by_dst: dict[int, list[str]] = {}
        for op, s, d in self.normal:
            by_dst.setdefault(d, []).append(f"{op}~{s}")
        return "+".join("|" + "|".join(by_dst[d]) + "|" for d in sorted(by_dst))

    @classmethod
    def from_nb201_string(cls, arch: str) -> Genotype:
        """Parse an NB201 arch string. Raises GenotypeError when malformed."""
        edges = []
        try:
            for dst, seg in enumerate(arch.split("+"), start=1):
                for item in filter(None, seg.split("|")):
                    op, src = item.split("~")
                    edges.append((op, int(src), dst))
        except ValueError:
            raise GenotypeError(f"malformed NB201 arch string {arch!r}") from None
        return cls("nb201", tuple(edges), (3,)).validate()


def _from_darts_tuples(normal, reduce) -> Genotype:
    """Convert the DARTS repo's (op, input_index) pairs (two per node, nodes in order) to the canonical form."""
    def conv(pairs):
        return tuple((op, src, 2 + i // 2) for i, (op, src) in enumerate(pairs))
    return Genotype("darts", conv(normal), (2, 3, 4, 5), conv(reduce), (2, 3, 4, 5))


#: Published cells, for golden tests and as baselines (DARTS repo `genotypes.py`; PC-DARTS repo `genotypes.py`).
PUBLISHED_GENOTYPES: dict[str, Genotype] = {
    "darts_v2": _from_darts_tuples(
        [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 1),
         ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1), ("max_pool_3x3", 0),
         ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)]),
    "pcdarts_cifar": _from_darts_tuples(
        [("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1), ("sep_conv_5x5", 0),
         ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
        [("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2), ("sep_conv_3x3", 0),
         ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)]),
}
