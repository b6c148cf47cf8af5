"""The report side of evaluator ``nb201`` (`itnas.evaluators.nb201`): per method the look-ups (mean ± sample std
over seeds, collapse counts, margins), the table's best cell and the published numbers for scale, every run, the
search trajectories (table and figure, with the table's best cell and the published numbers as lines), and per pair
of methods (the reference `itnas`, else the first method, vs each other) the mean difference with Welch's 95 %
interval and a Mann-Whitney U test over seeds (`itnas.report.pairs`).

Only the report stage imports this module (through `itnas.evaluators.reports`), so editing it reruns the report,
never an evaluate stage.
"""

from __future__ import annotations

from typing import Any

from ..genotype import DERIVE_MODES
from . import EvaluatorReport, register_report
from .nb201 import NB201Evaluator

__all__ = ["NB201_DATASETS", "NB201Report", "nb201_cell", "nb201_value", "pair_comparisons", "published_label",
           "published_nb201", "reference_method", "trajectory_stats"]

#: NAS-Bench-201 test-accuracy metric (%) -> data set name (`itnas.nb201.NB201_METRICS`, 200-epoch columns).
NB201_DATASETS = {"nb201_c10_test": "CIFAR-10", "nb201_c100_test": "CIFAR-100", "nb201_in16_test": "ImageNet16-120"}


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




def published_label(entry: dict[str, Any]) -> str:
    """The scale table's label of one published NB201 row (an entry of published.json's "cifar10" list): what its
    numbers are, from the entry's own ``nb201.statistic`` (e.g. "mean ± std over searches"; the table's optimum:
    "table optimum"), "published (<statistic>, paper size): <method>"."""
    nb = entry["nb201"]
    what = "table optimum" if nb.get("optimum") else nb["statistic"]
    return f"published ({what}, paper size): {entry['method']}"


@register_report
class NB201Report(NB201Evaluator, EvaluatorReport):
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
            stds = nb.get("test_acc_std_pct") or [None] * len(nb["test_acc_pct"])
            rows.append([published_label(entry),
                         *(f"{a:.2f}" + ("" if sd is None else f" ± {sd:.2f}")
                           for a, sd in zip(nb["test_acc_pct"], stds, strict=True)),
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
        pairs = pair_table(info, runs)
        trajectory = trajectory_table(info, runs)
        return [per_method, *([pairs] if pairs else []), scale, *([trajectory] if trajectory else []), every]

    def figures(self, runs: list) -> list[tuple[str, Any]]:
        """The look-up bars (`figure`), then the search trajectories (`trajectory_figure`) where recorded."""
        out = [self.figure(runs)]
        if any(r.details.get("trajectory") for r in runs):
            out.append(("NAS-Bench-201 search trajectories per method", trajectory_figure(runs)))
        return out

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



def reference_method(methods: list[str]) -> str:
    """The method every other one is compared with: ``itnas`` when present, else the first."""
    return "itnas" if "itnas" in methods else methods[0]


def pair_comparisons(runs: list) -> list:
    """`itnas.report.pairs.PairComparison` of the reference method (`reference_method`) vs each other method, per
    NB201 test metric (CIFAR-10, CIFAR-100, ImageNet16-120; the configured derivation's cell, as metrics.json), over
    the seeds of one benchmark; with the collapse counts of both. Empty for fewer than 2 methods."""
    from ..report.pairs import compare_pair
    from ..report.tables import method_groups

    groups = method_groups(runs)
    if len(groups) < 2:
        return []
    ref = reference_method(list(groups))
    out = []
    for other, group in groups.items():
        if other == ref:
            continue
        for metric, name in NB201_DATASETS.items():
            out.append(compare_pair(
                f"{name} test (%)", ref, other, [nb201_value(r, r.derivation, metric) for r in groups[ref]],
                [nb201_value(r, r.derivation, metric) for r in group],
                collapsed_a=sum(r.collapsed() for r in groups[ref]), collapsed_b=sum(r.collapsed() for r in group)))
    return out


def pair_table(info: Any, runs: list) -> Any:
    """The report's table of `pair_comparisons` (None for fewer than 2 methods)."""
    from ..report.pairs import ALPHA
    from ..report.tables import Table, method_groups

    pairs = pair_comparisons(runs)
    if not pairs:
        return None
    groups = method_groups(runs)
    header = ["comparison", "data set", "n", "mean (%)", "difference (points)", "95 % interval (Welch)",
              "Mann-Whitney U, p (two-sided)", "collapsed searches", "what the data support"]
    rows = []
    for c in pairs:
        na, nb = c.n
        means = " / ".join("n/a" if not xs else f"{sum(xs) / len(xs):.2f}" for xs in (c.a, c.b))
        rows.append([f"{c.reference} vs {c.other}", c.metric.removesuffix(" test (%)"), f"{na} / {nb}", means,
                     "n/a" if c.diff is None else f"{c.diff:+.2f}",
                     "n/a" if c.ci is None else f"[{c.ci[0]:+.2f}, {c.ci[1]:+.2f}]",
                     "n/a" if c.p is None else f"U={c.u:g}, p={c.p:.2g} ({c.test})",
                     f"{c.collapsed_a} of {len(groups[c.reference])} / {c.collapsed_b} of {len(groups[c.other])}",
                     c.reading()])
    notes = [
        (f"Per pair of methods ({pairs[0].reference} vs each other), per data set: the NAS-Bench-201 test accuracy "
         f"of the derived cell ({info.derivation} derivation, the chains' metrics.json) over seeds. n, means and "
         "collapsed searches: reference / other. Difference: mean of the reference minus mean of the other; "
         "interval: Welch's t interval of that difference (95 %, needs n >= 2 per method); rank test: two-sided "
         "Mann-Whitney U of the reference's values (exact p, ties included, up to 8 seeds per method, else the normal "
         "approximation with tie correction). Seeds are treated as unpaired: a seed fixes one method's search only."),
        (f"Readings use p < {ALPHA:g} and the interval; nothing is corrected for the {len(pairs)} comparisons of this "
         "table, and the look-ups of one search on the three data sets are not independent (one cell). With 5 seeds "
         "per method the exact rank test's smallest p is 0.0079; with 3, 0.1 (it can never reject)."),
        ("A search whose accuracy collapses (all parameter-free cell) gives an outlier that widens the interval; the "
         "rank test is robust to it. Neither says why a method collapses, nor how it ranks at paper size.")]
    return Table(f"{info.label}: pairwise comparison over seeds", info.size, header, rows, notes)


def trajectory_stats(group: list, metric: str) -> list[tuple[int, Any]]:
    """[(epoch, `Stat`)]: mean ± sample std over one method's runs of the NB201 `metric` (%) of the cell derived
    after each search epoch (details["trajectory"]; runs without one are left out), epochs in order."""
    from ..report.stats import stat

    values: dict[int, list[float]] = {}
    for r in group:
        for point in r.details.get("trajectory") or []:
            values.setdefault(int(point["epoch"]), []).append(float(point[metric]))
    return [(epoch, stat(values[epoch])) for epoch in sorted(values)]


def _shown_epochs(epochs: list[int], most: int = 10) -> list[int]:
    """At most `most` of `epochs` (sorted), evenly spaced, the first and the last always."""
    if len(epochs) <= most:
        return epochs
    return sorted({epochs[round(k * (len(epochs) - 1) / (most - 1))] for k in range(most)})


def _trajectories(runs: list) -> tuple[dict, list[int]]:
    """({method: its runs}, of the methods whose runs record a search trajectory; the sorted epochs recorded)."""
    from ..report.tables import method_groups

    groups = {m: g for m, g in method_groups(runs).items() if any(r.details.get("trajectory") for r in g)}
    epochs = sorted({int(p["epoch"]) for g in groups.values() for r in g for p in r.details.get("trajectory") or []})
    return groups, epochs


def trajectory_table(info: Any, runs: list) -> Any:
    """Per method and data set, the NB201 test accuracy (%) of the cell derived after search epochs (at most 10,
    evenly spaced, the last always), mean ± sample std over seeds; None when no run records a trajectory."""
    from ..report.tables import Table

    groups, epochs = _trajectories(runs)
    if not groups:
        return None
    shown = _shown_epochs(epochs)
    header = ["method", "data set", "n", *(f"epoch {e + 1}" for e in shown)]
    rows = []
    for method, group in groups.items():
        for metric, name in NB201_DATASETS.items():
            by_epoch = dict(trajectory_stats(group, metric))
            n = max((s.n for s in by_epoch.values()), default=0)
            rows.append([method, name, str(n), *(by_epoch[e].text() if e in by_epoch else "n/a" for e in shown)])
    notes = [("Search trajectory: the NAS-Bench-201 test accuracy (%) of the marginal cell derived after each search "
              "epoch (the search history's genotype of that epoch, epoch_genotypes.json, looked up by the evaluate "
              "stage), mean ± sample std over seeds; epoch 1 = after the first epoch (warm-up epochs included: "
              "their alphas are the initial ones). The last epoch's cell is the chain's marginal cell. "
              + (f"Epochs shown: {len(shown)} of {len(epochs)}, evenly spaced. " if len(shown) < len(epochs) else "")
              + "The HTML page plots every epoch, with the table's best cell and the published numbers as lines.")]
    return Table(f"{info.label}: search trajectories (NB201 test accuracy per search epoch)", info.size, header, rows,
                 notes)


def published_nb201() -> list[tuple[str, list[float], str]]:
    """(method, [CIFAR-10, CIFAR-100, ImageNet16-120 test accuracy (%)], source) of the published NB201 results
    (`itnas.report.tables.load_published`), without the table's optimum (drawn from the look-ups)."""
    from ..report.tables import load_published

    return [(e["method"], [float(v) for v in e["nb201"]["test_acc_pct"]], e["nb201"]["source"])
            for e in load_published()["cifar10"] if e.get("nb201") and not e["nb201"].get("optimum")]


def trajectory_figure(runs: list) -> Any:
    """The search trajectories of one benchmark, one panel per data set (CIFAR-10 / CIFAR-100 / ImageNet16-120):
    per method the NB201 test accuracy (%) of the cell derived after each search epoch, mean over seeds (line)
    ± sample std (band, n >= 2); the table's best cell (details["table_best"], black dashed) and the published
    numbers (`published_nb201`, grey) as horizontal lines. x: search epochs done (1 = after the first)."""
    import plotly.graph_objects as go
    from plotly.colors import hex_to_rgb, qualitative
    from plotly.subplots import make_subplots

    groups, epochs = _trajectories(runs)
    fig = make_subplots(rows=1, cols=len(NB201_DATASETS), subplot_titles=list(NB201_DATASETS.values()),
                        horizontal_spacing=0.07)
    x_span = [1, max(epochs, default=0) + 1]
    best = _table_best(runs)
    dashes = ("dot", "dashdot", "longdash", "longdashdot", "solid")
    for col, metric in enumerate(NB201_DATASETS, start=1):
        for k, (method, group) in enumerate(groups.items()):
            color = qualitative.Plotly[k % len(qualitative.Plotly)]
            points = trajectory_stats(group, metric)
            xs = [e + 1 for e, _ in points]
            band = [(x, s) for x, (_, s) in zip(xs, points, strict=True) if s.std is not None]
            if band:
                r, g, b = hex_to_rgb(color)
                fig.add_trace(go.Scatter(x=[x for x, _ in band], y=[s.mean + s.std for _, s in band], mode="lines",
                                         line={"width": 0}, hoverinfo="skip", showlegend=False,
                                         legendgroup=method, name=f"{method} + std"), row=1, col=col)
                fig.add_trace(go.Scatter(x=[x for x, _ in band], y=[s.mean - s.std for _, s in band], mode="lines",
                                         line={"width": 0}, fill="tonexty", fillcolor=f"rgba({r},{g},{b},0.15)",
                                         hoverinfo="skip", showlegend=False, legendgroup=method,
                                         name=f"{method} - std"), row=1, col=col)
            fig.add_trace(go.Scatter(
                x=xs, y=[s.mean for _, s in points], mode="lines+markers", name=method, legendgroup=method,
                showlegend=col == 1, line={"color": color, "width": 2}, marker={"size": 4},
                customdata=[[s.text(), s.n] for _, s in points],
                hovertemplate=f"{method}, epoch %{{x}}: %{{customdata[0]}} % (n=%{{customdata[1]}})<extra></extra>"),
                row=1, col=col)
        lines = ([("table best", best[metric], "NAS-Bench-201 table", "black", "dash")] if metric in best else [])
        lines += [(f"published: {m}", values[col - 1], source, "#888888", dashes[j % len(dashes)])
                  for j, (m, values, source) in enumerate(published_nb201())]
        for label, value, source, color, dash in lines:
            fig.add_trace(go.Scatter(x=x_span, y=[value, value], mode="lines", name=label, legendgroup=label,
                                     showlegend=col == 1, line={"color": color, "dash": dash, "width": 1},
                                     hovertemplate=f"{label}: {value:.2f} % ({source})<extra></extra>"),
                          row=1, col=col)
        fig.update_xaxes(title_text="search epochs done", row=1, col=col)
        fig.update_yaxes(title_text="test accuracy (%)" if col == 1 else None, row=1, col=col)
    fig.update_layout(height=470, margin={"t": 60, "b": 40}, legend={"orientation": "h", "y": -0.18},
                      title_text=("NAS-Bench-201 test accuracy of the cell derived after each search epoch (mean ± "
                                  "sample std over seeds; lines: table best, published at paper size)"),
                      title_font_size=13)
    return fig


def _table_best(runs: list) -> dict[str, float]:
    """{metric: value (%)} of the NB201 table's best cell per test metric, from the runs' details."""
    for r in runs:
        best = r.details.get("table_best") or {}
        if all(m in best for m in NB201_DATASETS):
            return {m: float(best[m]["value"]) for m in NB201_DATASETS}
    return {}
