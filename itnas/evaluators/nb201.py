"""Evaluator ``nb201``: the derived cells looked up in the NAS-Bench-201 table (Dong & Yang, ICLR 2020; 200-epoch
columns, `itnas.nb201`); no training, so its chains have no `train` stage. Both derivations of the supernet
(derivations.json: marginal and sequential) are looked up: evaluate/details.json (`NB201Details`) holds both cells
and the table's best cell per metric, metrics.json (`NB201Metrics`) the cell of `derive.mode` (genotype.json).
"""

from __future__ import annotations

from typing import Any, Literal

from ..contracts import Contract
from ..genotype import DERIVE_MODES, GenotypeError
from . import EvalJob, Evaluator, register_evaluator

__all__ = ["NB201_DATASETS", "NB201Details", "NB201Evaluator", "NB201Metrics", "nb201_value"]

#: NAS-Bench-201 test-accuracy metric (%) -> data set name (`itnas.nb201.NB201_METRICS`, 200-epoch columns).
NB201_DATASETS = {"nb201_c10_test": "CIFAR-10", "nb201_c100_test": "CIFAR-100", "nb201_in16_test": "ImageNet16-120"}
_PUBLISHED_LABEL = "published (best of several searches, paper size)"


class NB201Metrics(Contract):
    """metrics.json of an nb201 chain: the derived cell's accuracies (%) in the NB201 table: CIFAR-10, CIFAR-100 and
    ImageNet16-120, test and valid; the cell's arch string, its parameter-free op count (none, skip, pool) and the
    derivation mode that produced it. (A cell the table does not hold is an error of the look-up,
    `itnas.nb201.NB201Table.lookup`.) evaluation / search_time_s: as in `itnas.evaluators.train.TrainMetrics`."""

    evaluation: Literal["nb201"] = "nb201"
    nb201_c10_test: float
    nb201_c10_valid: float
    nb201_c100_test: float
    nb201_c100_valid: float
    nb201_in16_test: float
    nb201_in16_valid: float
    collapse_count: int
    arch: str
    derivation: str
    search_time_s: float | None = None


class NB201Details(Contract):
    """evaluate/details.json of an nb201 chain: the configured derivation; per derivation mode its cell
    {arch, collapse_count, nb201_* (%)}; the table's best cell per test metric {metric: {arch, value}}."""

    evaluation: Literal["nb201"] = "nb201"
    derivation: str
    cells: dict[str, dict[str, Any]]
    table_best: dict[str, dict[str, Any]] = {}


def nb201_cell(run: Any, mode: str) -> dict[str, Any] | None:
    """The NB201 look-up of a run's cell derived with rule `mode`: {arch, collapse_count, nb201_* (%)}; from
    details["cells"], else (no details) from metrics.json for the configured derivation; None otherwise."""
    cells = run.details.get("cells") or {}
    if mode in cells:
        return cells[mode]
    if mode == run.derivation:
        return {k: v for k, v in run.metrics.items() if k.startswith("nb201_") or k in ("arch", "collapse_count")}
    return None


def nb201_value(run: Any, mode: str, metric: str) -> float | None:
    """The NB201 look-up `metric` (%) of the run's cell derived with rule `mode`, None when not recorded."""
    value = (nb201_cell(run, mode) or {}).get(metric)
    return None if value is None else float(value)


def _collapse(run: Any, mode: str) -> int | None:
    cell = nb201_cell(run, mode)
    return None if cell is None or cell.get("collapse_count") is None else int(cell["collapse_count"])


@register_evaluator
class NB201Evaluator(Evaluator):
    name = "nb201"
    metrics_model = NB201Metrics
    details_model = NB201Details

    # ------------------------------------------------------------------------------------------ running
    def evaluate(self, job: EvalJob) -> tuple[NB201Metrics, NB201Details, str]:
        """Look both derivations up; genotype.json must be derivations.json's `derive.mode` cell."""
        from ..nb201 import DEFAULT_METRICS, load_nb201_table

        run, mode = job.record, job.derivation
        table = load_nb201_table()
        cells = run.derivations_of()
        if run.genotype_of() != cells[mode]:
            raise GenotypeError(f"{run.genotype} is not the {mode} genotype of {run.derivations}; rerun `dvc repro`")
        looked_up = {m: {"arch": cell.to_nb201_string(), "collapse_count": cell.collapse_count, **table.lookup(cell)}
                     for m, cell in cells.items()}
        best = {name: table.best(name) for name in DEFAULT_METRICS}
        table_best = {name: {"arch": arch, "value": value} for name, (arch, value) in best.items()}
        details = NB201Details(derivation=mode, cells=looked_up, table_best=table_best)
        picked = looked_up[mode]
        metrics = NB201Metrics(**{k: picked[k] for k in NB201Metrics.model_fields if k in picked}, derivation=mode)
        other = next(m for m in DERIVE_MODES if m != mode)
        line = (f"{run.name}: NB201 cell {picked['arch']}: CIFAR-10 {metrics.nb201_c10_test:.2f} %, CIFAR-100 "
                f"{metrics.nb201_c100_test:.2f} %, ImageNet16-120 {metrics.nb201_in16_test:.2f} % (test); "
                f"{other} derivation: CIFAR-10 {looked_up[other]['nb201_c10_test']:.2f} %")
        return metrics, details, line

    # ------------------------------------------------------------------------------------------ report
    def headline(self, run: Any) -> str:
        return f"NB201 CIFAR-10 test {float(run.metrics['nb201_c10_test']):.2f} % ({run.derivation} cell)"

    def method_stats(self, group: list) -> dict[str, Any]:
        """n, min_margin / median_margin; for mode in marginal / sequential: ``<mode>:<metric>`` for every NB201
        test metric (%), ``<mode>:collapse_count`` (`Stat`), ``<mode>:collapsed`` (int, searches whose cell is all
        parameter-free, collapse count == 6 edges), ``<mode>:n_collapsed`` (runs with a recorded cell of that mode)."""
        from ..report.stats import margin_stats, stat

        out = margin_stats(group)
        for mode in DERIVE_MODES:
            for metric in NB201_DATASETS:
                out[f"{mode}:{metric}"] = stat(nb201_value(r, mode, metric) for r in group)
            known = [(r, c) for r, c in ((r, _collapse(r, mode)) for r in group) if c is not None]
            out[f"{mode}:collapse_count"] = stat(c for _, c in known)
            out[f"{mode}:collapsed"] = sum(r.collapsed(c) for r, c in known)
            out[f"{mode}:n_collapsed"] = len(known)
        return out

    def summary(self, group: list) -> dict[str, Any]:
        """``nb201_*_test`` of the configured derivation, ``seq_nb201_*`` of the sequential one, ``seq_collapsed``
        and ``collapsed`` = {"count", "n"}."""
        from ..report.stats import stat

        row: dict[str, Any] = {}
        for metric in NB201_DATASETS:
            row[metric] = stat(nb201_value(r, r.derivation, metric) for r in group).rounded()
        for metric in NB201_DATASETS:
            row[f"seq_{metric}"] = stat(nb201_value(r, "sequential", metric) for r in group).rounded()
        seq = [(r, c) for r, c in ((r, _collapse(r, "sequential")) for r in group) if c is not None]
        row["seq_collapsed"] = {"count": sum(r.collapsed(c) for r, c in seq), "n": len(seq)}
        row["collapsed"] = {"count": sum(r.collapsed() for r in group), "n": len(group)}
        return row

    def tables(self, info: Any, runs: list) -> list:
        """Method x metric (each data set's test accuracy for both derivations), for scale (the table's best cell
        and the published NB201 rows), one row per run and derivation."""
        from ..derive import NOISE_MARGIN
        from ..report.tables import Table, fmt, load_published, margin_text, margins, method_groups, seeds_text

        header = ["method", "seeds"]
        for name in NB201_DATASETS.values():
            header += [f"{name} test (%), {mode}" for mode in DERIVE_MODES]
        header += [f"collapsed searches, {mode}" for mode in DERIVE_MODES]
        header += [f"mean collapse count, {mode}" for mode in DERIVE_MODES]
        header += ["smallest margin", "median margin"]
        rows = []
        for method, group in method_groups(runs).items():
            s = self.method_stats(group)
            row = [method, seeds_text(group)]
            for metric in NB201_DATASETS:
                row += [s[f"{mode}:{metric}"].text() for mode in DERIVE_MODES]
            row += [f"{s[f'{mode}:collapsed']} of {s[f'{mode}:n_collapsed']}" for mode in DERIVE_MODES]
            row += [s[f"{mode}:collapse_count"].text(".1f") for mode in DERIVE_MODES]
            row += [margin_text(s["min_margin"]), margin_text(s["median_margin"])]
            rows.append(row)
        notes = [
            (f"NAS-Bench-201 test accuracy (%) of the derived cell (200-epoch table columns, itnas.nb201), for the "
             f"marginal and the sequential derivation of the same searched supernet; the configured derivation "
             f"({info.derivation}) is the chain's genotype.json. Mean ± sample std over seeds (ddof=1); one seed: the "
             f"value and n=1. Selection rule: every seed is reported; no selection on test data."),
            ("Collapsed search: every op of the derived cell is parameter-free (none, skip, avg pool): collapse count "
             "== 6 edges. Mean collapse count: parameter-free ops among the 6 edges."),
            ("Margins (docs/method.md 2.6; alpha units): for every edge of the last search epoch's marginal cell, the "
             "gap between its op's alpha and the runner-up's; the smallest and the median per search, averaged over "
             f"seeds (a choice within float rounding is < {NOISE_MARGIN:g}).")]
        per_method = Table(f"{info.label}: NAS-Bench-201 look-up per method", info.size, header, rows, notes)

        header = ["reference", *(f"{name} test (%)" for name in NB201_DATASETS.values()), "note", "source"]
        best = _table_best(runs)
        rows = [["best cell of the NB201 table (per metric)", *(fmt(best.get(m)) for m in NB201_DATASETS),
                 "the table's maximum", "NAS-Bench-201 table (itnas.nb201), as looked up by the evaluate stage"]]
        for entry in load_published()["cifar10"]:
            nb = entry["nb201"]
            rows.append([f"{_PUBLISHED_LABEL}: {entry['method']}", *(f"{a:.2f}" for a in nb["test_acc_pct"]),
                         nb.get("note") or "", nb["source"]])
        notes = ["Published numbers are for scale only: paper-size searches (C=16, 5 cells per stage, 50 epochs) "
                 "reported as the papers give them; they are not comparable with the CPU-reduced searches above."]
        scale = Table(f"{info.label}: for scale (NB201 table best and published results)", info.size, header, rows,
                      notes)

        header = ["method", "seed", "derivation", "cell", "collapse count",
                  *(f"{name} test (%)" for name in NB201_DATASETS.values()), "smallest / median margin",
                  "search time (s)"]
        rows = []
        for r in runs:
            margin = margins(r.decisiveness)
            for mode in DERIVE_MODES:
                cell = nb201_cell(r, mode)
                if cell is None:
                    continue
                mark = " (genotype.json)" if mode == r.derivation else ""
                values = [fmt(nb201_value(r, mode, m)) for m in NB201_DATASETS]
                first = mode == DERIVE_MODES[0]  # margins and time belong to the search (the marginal cell's choices)
                rows.append([r.method, str(r.seed), mode + mark, str(cell.get("arch", "n/a")),
                             str(cell.get("collapse_count", "n/a")), *values, margin if first else "",
                             fmt(r.search_time_s, ".0f") if first else ""])
        notes = ["Margins: of the search's marginal cell (alpha units); * = a choice within float rounding."]
        every = Table(f"{info.label}: every run", info.size, header, rows, notes, code_columns=(3,))
        return [per_method, scale, every]

    def figure(self, runs: list) -> tuple[str, Any]:
        """NAS-Bench-201 test accuracy (%) of the derived cells per method, one panel per data set: bars = mean over
        seeds (error bars: sample std, n >= 2) for the marginal and the sequential derivation; dashed line: the
        table's best cell (details["table_best"])."""
        import plotly.graph_objects as go
        from plotly.colors import qualitative
        from plotly.subplots import make_subplots

        from ..report.stats import group_runs, stat

        groups = {m: g for methods in group_runs(runs).values() for m, g in methods.items()}
        fig = make_subplots(rows=1, cols=len(NB201_DATASETS), subplot_titles=list(NB201_DATASETS.values()),
                            horizontal_spacing=0.07)
        best = next((r.details["table_best"] for r in runs if r.details.get("table_best")), {})
        for col, metric in enumerate(NB201_DATASETS, start=1):
            for k, mode in enumerate(DERIVE_MODES):
                stats = [stat(nb201_value(r, mode, metric) for r in g) for g in groups.values()]
                fig.add_trace(go.Bar(
                    x=list(groups), y=[s.mean for s in stats], name=f"{mode} derivation", legendgroup=mode,
                    showlegend=col == 1, marker_color=qualitative.Plotly[k], offsetgroup=mode,
                    error_y={"type": "data", "array": [s.std or 0.0 for s in stats], "visible": True},
                    customdata=[[s.text(), s.n] for s in stats],
                    hovertemplate=f"%{{x}}, {mode}: %{{customdata[0]}} % (n=%{{customdata[1]}})<extra></extra>"),
                    row=1, col=col)
            if metric in best:
                value = float(best[metric]["value"])
                fig.add_hline(y=value, line={"color": "black", "dash": "dash", "width": 1}, row=1, col=col,
                              annotation_text=f"table best {value:.2f}", annotation_font_size=9,
                              annotation_position="top left")
            fig.update_yaxes(range=[0, 100], title_text="test accuracy (%)" if col == 1 else None, row=1, col=col)
        fig.update_layout(height=430, barmode="group", margin={"t": 60, "b": 40},
                          legend={"orientation": "h", "y": -0.12},
                          title_text="NAS-Bench-201 test accuracy of the derived cells (mean ± sample std over seeds)",
                          title_font_size=13)
        return "NAS-Bench-201 look-up per method", fig

    def size_text(self, train_cfg: Any) -> str:
        return "evaluation: NAS-Bench-201 table look-up (no training)"


def _table_best(runs: list) -> dict[str, float]:
    """{metric: value (%)} of the NB201 table's best cell per test metric, from the runs' details."""
    for r in runs:
        best = r.details.get("table_best") or {}
        if all(m in best for m in NB201_DATASETS):
            return {m: float(best[m]["value"]) for m in NB201_DATASETS}
    return {}
