"""NAS-Bench-201 look-ups: the benchmark's published accuracy (%) of every one of its 15,625 cells, offline.

The table (`assets/nb201_results.csv.gz`, shipped with the package; contents, sources and licences in
`assets/NB201_ATTRIBUTION.md`) holds one row per cell in NAS-Bench-201 index order, keyed by the canonical arch
string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (segment j lists the edges i->j of node j, in source order
0..j-1; `Genotype.to_nb201_string` emits exactly this order). All accuracies are top-1 accuracy in percent (%).
Benchmark: Dong & Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture Search",
ICLR 2020; the ``*_nats`` columns: Dong et al., "NATS-Bench", TPAMI 2021.

Default metrics (`NB201_METRICS`, readable name -> column), the benchmark's 200-epoch headline numbers:

- ``nb201_c10_valid`` = ``c10v_valid_200``: "cifar10-valid" setting (trained on 25k, validated on the other 25k).
- ``nb201_c10_test`` = ``c10_test_200_nats``: trained on all 50k CIFAR-10 training images, original 10k test set;
  the "CIFAR-10 test" column of NB201 papers. The published DARTS row (all-skip cell) reads 54.30, which this
  column gives (54.2967); the cifar10-valid setting's ``c10v_test_200`` gives 39.99 for that cell.
- ``nb201_c100_valid`` / ``nb201_c100_test`` = ``c100_valid_200`` / ``c100_test_200`` (NB201 v1_1 x-valid / x-test).
- ``nb201_in16_valid`` / ``nb201_in16_test`` = ``in16_valid_200`` / ``in16_test_200`` (ImageNet16-120, v1_1).

The CIFAR-100 and ImageNet16-120 test defaults are the v1_1 columns, from the same runs (same seeds) as their
valid columns. Both they and the NATS-Bench ``*_test_200_nats`` columns reproduce the published DARTS row
(all-skip cell: 15.61 / 16.32) and the benchmark optima (73.51 / 47.31); the two sources differ for 2,486 (CIFAR-100)
and 2,458 (ImageNet16-120) other cells by a median 0.25 / 0.28 pp (different seed sets; tests/test_nb201.py), and a
``*_nats`` column is available by its column name.
The 12-epoch ``*_12`` columns (a cheap proxy, not the benchmark's numbers) are returned only when asked for by
column name, never by default.

The product reads only the shipped file (`shipped_table_path`), never the project's shared data folder.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import zlib
from array import array
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType

from . import assets
from .errors import ItnasError, MissingOutputError
from .genotype import Genotype, GenotypeError
from .spaces import NB201_OPS

__all__ = ["DEFAULT_METRICS", "NB201_ARCH_FORM", "NB201_METRICS", "NB201_N_CELLS", "NB201LookupError", "NB201Table",
           "NB201TableError", "load_nb201_table", "shipped_table_path"]

#: Cells in NAS-Bench-201 (5 ops on each of 6 edges: 5**6).
NB201_N_CELLS = 15_625

#: Readable metric name -> table column: the 200-epoch benchmark numbers, top-1 accuracy (%). The defaults of
#: `NB201Table.lookup`; see the module docstring for why these columns.
NB201_METRICS: Mapping[str, str] = MappingProxyType({
    "nb201_c10_valid": "c10v_valid_200",
    "nb201_c10_test": "c10_test_200_nats",
    "nb201_c100_valid": "c100_valid_200",
    "nb201_c100_test": "c100_test_200",
    "nb201_in16_valid": "in16_valid_200",
    "nb201_in16_test": "in16_test_200",
})

#: What `NB201Table.lookup` returns unless asked for other columns.
DEFAULT_METRICS: tuple[str, ...] = tuple(NB201_METRICS)

#: The arch-string form the table is keyed by (in error messages).
NB201_ARCH_FORM = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"

_KEY_COLUMNS = ("index", "arch", "iso")
_FILE_NAME = "nb201_results.csv.gz"


class NB201LookupError(LookupError):
    """An architecture that is not a NAS-Bench-201 cell (not in the table), e.g. a made-up op or a malformed string.

    A LookupError (not a KeyError, whose message prints as a quoted repr); the message names the string, the
    expected form and an example row.
    """


class NB201TableError(ItnasError, ValueError):
    """A table file that is not a readable NAS-Bench-201 results table (corrupt gzip, bad CSV, missing columns,
    wrong row count, a value that is not an accuracy in %). The message names the file."""


def shipped_table_path() -> Traversable:
    """The table shipped inside the package (``itnas/assets/nb201_results.csv.gz``)."""
    return resources.files(assets) / _FILE_NAME


class NB201Table:
    """The NAS-Bench-201 results table: per cell, its arch string, isomorphism class and accuracies (%).

    Build it with `load_nb201_table`. Read-only. Rows are NAS-Bench-201 indices 0..15624; values are top-1
    accuracy in percent (Dong & Yang, NAS-Bench-201, ICLR 2020; the ``*_nats`` columns from NATS-Bench, Dong et
    al., TPAMI 2021). Metrics are named either by a readable name of `NB201_METRICS` or by a column name
    (`columns`).
    """

    def __init__(self, archs: Iterable[str], iso: Iterable[str], values: Mapping[str, Iterable[float]],
                 source: str = "<memory>"):
        self._archs = tuple(archs)
        self._iso = tuple(iso)
        self._values = {name: array("d", col) for name, col in values.items()}
        self.source = source
        self._index = {a: i for i, a in enumerate(self._archs)}
        n = len(self._archs)
        if len(self._index) != n:
            raise NB201TableError(f"{source}: arch strings are not unique")
        if len(self._iso) != n or any(len(col) != n for col in self._values.values()):
            raise NB201TableError(f"{source}: columns of different lengths")

    def __len__(self) -> int:
        return len(self._archs)

    def __repr__(self) -> str:
        return f"NB201Table({len(self)} cells, {len(self._values)} metric columns, source={self.source!r})"

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of the accuracy columns (%), in file order (``index``, ``arch``, ``iso`` excluded)."""
        return tuple(self._values)

    # ------------------------------------------------------------------ keys
    def canonical(self, arch: str | Genotype) -> str:
        """The table's arch string for `arch`: an NB201 arch string (edges within a node's segment in any order)
        or an nb201 Genotype.

        Raises:
            GenotypeError: a Genotype of another space, or one that does not fit the nb201 space.
            NB201LookupError: a string that is not a cell of the table (names it, the expected form, an example).
            TypeError: neither a string nor a Genotype.
        """
        if isinstance(arch, Genotype):
            if arch.space != "nb201":
                raise GenotypeError(f"NAS-Bench-201 holds nb201 cells only; this genotype is for space "
                                    f"{arch.space!r}")
            return arch.validate().to_nb201_string()
        if not isinstance(arch, str):
            raise TypeError(f"want an NB201 arch string or an nb201 Genotype, got {type(arch).__name__}")
        if arch in self._index:
            return arch
        try:
            canonical = Genotype.from_nb201_string(arch.strip()).to_nb201_string()
            reason = "no such cell in the table"
        except GenotypeError as err:
            canonical, reason = None, str(err)
        if canonical in self._index:
            return canonical
        raise NB201LookupError(
            f"arch {arch!r} is not a NAS-Bench-201 cell ({reason}); want the form {NB201_ARCH_FORM!r} with ops "
            f"{', '.join(NB201_OPS)}, e.g. row 0 of {self.source}: {self._archs[0]!r}")

    def index_of(self, arch: str | Genotype) -> int:
        """NAS-Bench-201 architecture index (0..15624) of `arch`. Raises as `canonical`."""
        return self._index[self.canonical(arch)]

    def arch(self, index: int) -> str:
        """The canonical arch string of NAS-Bench-201 index `index`. Raises IndexError outside 0..len-1."""
        if not 0 <= index < len(self):
            raise IndexError(f"NAS-Bench-201 index {index} out of range 0..{len(self) - 1}")
        return self._archs[index]

    def iso(self, arch: str | Genotype) -> str:
        """The isomorphism key of `arch`: isomorphic cells (same computation) share it. Raises as `canonical`."""
        return self._iso[self.index_of(arch)]

    # ------------------------------------------------------------------ values
    def resolve(self, metric: str) -> str:
        """The column of `metric`: a readable name of `NB201_METRICS` or a column name. Raises KeyError."""
        column = NB201_METRICS.get(metric, metric)
        if column not in self._values:
            raise KeyError(f"unknown NB201 metric or column {metric!r}; metrics: {', '.join(NB201_METRICS)}; "
                           f"columns: {', '.join(self._values)}")
        return column

    def column(self, metric: str) -> tuple[float, ...]:
        """All values (%) of `metric` (a readable name or a column name), in index order. Raises KeyError."""
        return tuple(self._values[self.resolve(metric)])

    def lookup(self, arch: str | Genotype, columns: Iterable[str] = DEFAULT_METRICS) -> dict[str, float]:
        """Accuracies (%) of cell `arch` (an NB201 arch string or an nb201 Genotype).

        Args:
            columns: readable metric names (`NB201_METRICS`) and/or column names (`columns`); a single name may be
                passed as a string. Default: the six 200-epoch benchmark metrics `DEFAULT_METRICS`. The 12-epoch
                ``*_12`` columns come only when named.

        Returns:
            {name as given: accuracy (%)}, in the order given.

        Raises:
            NB201LookupError: a string that is not a cell of the table. GenotypeError: a genotype of another space
            or one that misfits nb201. KeyError: an unknown metric or column name.
        """
        if isinstance(columns, str):
            columns = (columns,)
        resolved = {name: self.resolve(name) for name in columns}
        i = self.index_of(arch)
        return {name: self._values[col][i] for name, col in resolved.items()}

    def best(self, metric: str) -> tuple[str, float]:
        """(arch string, accuracy %) of the table's best cell for `metric` (a readable name or a column name):
        the highest value; ties go to the lowest NAS-Bench-201 index (``nb201_c10_test``: index 6111, 94.37).
        Raises KeyError on an unknown name."""
        col = self._values[self.resolve(metric)]
        value = max(col)
        return self._archs[col.index(value)], value


def _read_table(source: Path | Traversable, name: str) -> NB201Table:
    """Parse a gzip CSV table. Raises MissingOutputError (missing) or NB201TableError (anything else wrong)."""
    try:
        with source.open("rb") as raw, gzip.GzipFile(fileobj=raw) as gz:
            text = io.TextIOWrapper(gz, encoding="utf-8", newline="")
            reader = csv.reader(text)
            header = next(reader, None)
            if header is None:
                raise NB201TableError(f"NAS-Bench-201 table {name} is empty")
            missing = [c for c in (*_KEY_COLUMNS, *NB201_METRICS.values()) if c not in header]
            if missing or len(set(header)) != len(header):
                raise NB201TableError(f"NAS-Bench-201 table {name}: header lacks columns {missing} or repeats one; "
                                      f"header: {header}")
            value_cols = [(j, c) for j, c in enumerate(header) if c not in _KEY_COLUMNS]
            i_index, i_arch, i_iso = (header.index(c) for c in _KEY_COLUMNS)
            archs, iso = [], []
            values: dict[str, list[float]] = {c: [] for _, c in value_cols}
            for row_no, row in enumerate(reader):
                if len(row) != len(header):
                    raise NB201TableError(f"NAS-Bench-201 table {name}, data row {row_no}: {len(row)} fields, "
                                          f"header has {len(header)}")
                if row[i_index] != str(row_no):
                    raise NB201TableError(f"NAS-Bench-201 table {name}, data row {row_no}: index {row[i_index]!r}, "
                                          f"want {row_no} (rows in index order)")
                archs.append(row[i_arch])
                iso.append(row[i_iso])
                for j, c in value_cols:
                    v = float(row[j])
                    if not (math.isfinite(v) and 0.0 <= v <= 100.0):
                        raise NB201TableError(f"NAS-Bench-201 table {name}, data row {row_no}, column {c}: "
                                              f"{row[j]!r} is not an accuracy in %")
                    values[c].append(v)
    except FileNotFoundError:
        raise MissingOutputError(f"NAS-Bench-201 table {name} does not exist") from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error, ValueError) as err:
        if isinstance(err, NB201TableError):
            raise
        raise NB201TableError(f"NAS-Bench-201 table {name} is unreadable or corrupt "
                              f"({type(err).__name__}: {err})") from None
    if len(archs) != NB201_N_CELLS:
        raise NB201TableError(f"NAS-Bench-201 table {name} has {len(archs)} rows, want {NB201_N_CELLS}")
    return NB201Table(archs, iso, values, source=name)


@cache
def _shipped_table() -> NB201Table:
    return _read_table(shipped_table_path(), str(shipped_table_path()))


def load_nb201_table(path: str | os.PathLike | None = None) -> NB201Table:
    """Load the NAS-Bench-201 results table (gzip CSV; columns in `assets/NB201_ATTRIBUTION.md`).

    Args:
        path: a table file; None (default) reads the table shipped in the package, once per process (cached).

    Raises:
        MissingOutputError: the file does not exist (the message names it).
        NB201TableError: the file is not a readable table (corrupt gzip or CSV, missing columns, rows out of index
            order, not 15,625 rows, a value outside 0..100 %); the message names it.
    """
    if path is None:
        return _shipped_table()
    return _read_table(Path(path), str(path))
