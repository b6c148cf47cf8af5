"""The report page in a real browser: headless Chromium loads a page written from tiny hand-made runs of one train
benchmark and one nb201 benchmark, and a probe script injected into a copy of the page reports what it saw.

How: the copy gets an error recorder first in <head> (window errors, unhandled promise rejections, console.error)
and a probe before </body> that waits until every plotly figure is drawn, then writes a JSON record into a <pre>
element: the errors, per figure its title, its traces (name, x axis) with data and whether each was drawn (a
non-empty SVG path or a heatmap image), its legend texts, and per cell graph the boxes of its edge labels
(getBoundingClientRect of each annotation's background rectangle and text); per results table its caption, its
rendered cell texts (innerText) and its box. `chromium --headless --dump-dom` prints the DOM after the page
settled; the test parses the record. No Python dependency beyond the standard library; Chromium is a system
package (`apt-get install -y chromium`, as CI installs it). Marked `browser`: a missing Chromium fails the test
with that advice.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import (
    NB201_CELLS,
    NB201_TRAJECTORY,
    _record,
    arch_history,
    write_nb201_run,
    write_train_run,
)

from itnas.report import BenchmarkInfo, label_boxes, load_run, write_html
from itnas.report.cellgraph import LABEL_FONT_PX, boxes_overlap, genotype_figure, text_width_px

pytestmark = pytest.mark.browser

_RECORDER = """<script>window.__itnasErrors = [];
window.addEventListener('error', function (e) { window.__itnasErrors.push('error: ' + (e.message || e)); });
window.addEventListener('unhandledrejection', function (e) {
  window.__itnasErrors.push('unhandled rejection: ' + String(e.reason)); });
(function () { var ce = console.error; console.error = function () {
  window.__itnasErrors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
  ce.apply(console, arguments); };
})();</script>"""

_PROBE = """<script>(function () {
function hasData(t) {
  if (t.visible !== true) return false;
  return [t.x, t.y, t.z].some(function (a) { return a && Array.prototype.some.call(a, function (v) {
    return v !== null && v !== undefined; }); });
}
function drawn(el) {
  var paths = Array.prototype.some.call(el.querySelectorAll('path'), function (p) {
    var d = p.getAttribute('d') || ''; return d.length > 4 && !/^M0,0Z?$/.test(d); });
  var images = Array.prototype.some.call(el.querySelectorAll('image'), function (im) {
    return (im.getAttribute('href') || im.getAttribute('xlink:href') || '').length > 20; });
  return paths || images;
}
function rect(el) { var r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }
function collect() {
  var figures = [];
  document.querySelectorAll('.plotly-graph-div').forEach(function (gd) {
    var f = {id: gd.id, plotted: !!gd._fullLayout, withData: [], drawn: [], labels: [], names: [], legend: [],
             title: '', xaxes: []};
    if (!gd._fullLayout) { figures.push(f); return; }
    f.title = (gd._fullLayout.title && gd._fullLayout.title.text) || '';
    gd._fullData.forEach(function (t) { if (hasData(t)) f.withData.push(t.index);
      f.names[t.index] = t.name; f.xaxes[t.index] = t.xaxis; });
    gd.querySelectorAll('g.legend .legendtext').forEach(function (el) { f.legend.push(el.textContent); });
    gd.querySelectorAll('g.trace, g.hm').forEach(function (el) {
      var cd = el.__data__, tr = cd && ((cd[0] && cd[0].trace) || cd.trace);
      if (tr && drawn(el) && f.drawn.indexOf(tr.index) < 0) f.drawn.push(tr.index);
    });
    var svg = rect(gd.querySelector('.main-svg'));
    (gd.layout.annotations || []).forEach(function (a, i) {
      if (!(a.name || '').startsWith('edge ')) return;
      var g = gd.querySelector('g.annotation[data-index="' + i + '"]');
      f.labels.push({name: a.name, xref: a.xref, text: a.text, svg: svg,
                     bg: g ? rect(g.querySelector('rect.bg')) : null,
                     textBox: g ? rect(g.querySelector('text.annotation-text')) : null});
    });
    figures.push(f);
  });
  var tables = [];
  document.querySelectorAll('table.results').forEach(function (t) {
    tables.push({caption: t.caption ? t.caption.innerText : '', rect: rect(t),
                 rows: Array.prototype.map.call(t.rows, function (r) {
                   return Array.prototype.map.call(r.cells, function (c) { return c.innerText; }); })});
  });
  var pre = document.createElement('pre');
  pre.id = 'itnas-probe';
  pre.textContent = JSON.stringify({errors: window.__itnasErrors || ['no error recorder'], figures: figures,
                                    tables: tables});
  document.body.appendChild(pre);
}
var tries = 0;
function wait() {  // until every figure div has been plotted (or 10 s of page time)
  var divs = document.querySelectorAll('.plotly-graph-div');
  var done = Array.prototype.every.call(divs, function (gd) {
    return gd._fullLayout && gd.querySelector('.main-svg'); });
  if (done || ++tries > 100) setTimeout(collect, 300); else setTimeout(wait, 100);
}
window.addEventListener('load', function () { setTimeout(wait, 100); });
})();</script>"""


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("this browser test needs the `chromium` binary on PATH; install it with `apt-get install -y "
                    "chromium` (Debian; CI installs it so), or deselect browser tests with `-m 'not browser'`",
                    pytrace=False)
    return path


def render(page: Path, tmp: Path, probe: str = _PROBE, head_end: str = "") -> dict:
    """Load a probed copy of `page` in headless Chromium; the probe's record (module docstring). `probe`: the script
    before </body> that writes the record into <pre id="itnas-probe"> (default: the plotly probe of this module);
    `head_end`: a script put before </head>, after the page's own head scripts."""
    text = page.read_text(encoding="utf-8")
    assert text.count("<head>") == 1 and text.count("</body>") == 1
    probed = tmp / f"probed-{page.name}"
    text = text.replace("<head>", "<head>\n" + _RECORDER, 1).replace("</body>", probe + "\n</body>", 1)
    probed.write_text(text.replace("</head>", head_end + "\n</head>", 1), encoding="utf-8")
    cmd = [_chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
           "--disable-extensions", f"--user-data-dir={tmp / 'chromium-profile'}", "--window-size=1400,1000",
           "--virtual-time-budget=15000", "--dump-dom", probed.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    match = re.search(r'<pre id="itnas-probe">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"no probe record in the DOM (exit {proc.returncode}); stderr tail:\n{proc.stderr[-2000:]}"
    return json.loads(html.unescape(match.group(1)))


TRAIN = BenchmarkInfo("fm", "Fashion-MNIST (browser test)", "train", "CPU-reduced search: space darts, C=4, 3 cells",
                      dataset="fashion_mnist", space="darts")
NB201 = BenchmarkInfo("nb", "NAS-Bench-201 (browser test)", "nb201", "CPU-reduced search: space nb201, C=4",
                      dataset="cifar10", space="nb201")


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("page")
    train = []
    for method, seed, acc in (("itnas", 0, 81.0), ("itnas", 1, 82.5), ("darts", 0, 79.5)):
        history, genotype = arch_history("darts", method, seed)
        run = write_train_run(root / "runs" / "fm" / f"{method}-s{seed}", genotype, history, acc, seed)
        train.append(load_run(_record(run), "train"))
    nb = []
    for method, seed in (("itnas", 0), ("itnas", 1), ("darts", 0), ("darts", 1)):  # 2 seeds: bands and intervals
        history, _ = arch_history("nb201", method, seed)
        run = write_nb201_run(root / "runs" / "nb" / f"{method}-s{seed}", NB201_CELLS[(method, seed)], history,
                              trajectory=NB201_TRAJECTORY[(method, seed)])
        nb.append(load_run(_record(run), "nb201"))
    path = root / "report.html"
    write_html([(TRAIN, train), (NB201, nb)], path)
    return path


@pytest.fixture(scope="module")
def record(page, tmp_path_factory) -> dict:
    return render(page, tmp_path_factory.mktemp("chromium"))


def test_page_has_no_script_errors(record):
    assert record["errors"] == []


def test_every_figure_is_drawn(page, record):
    figures = record["figures"]
    assert len(figures) == page.read_text().count("Plotly.newPlot(") > 0
    for f in figures:
        assert f["plotted"], f["id"]
        assert f["withData"], f"figure {f['id']} has no trace with data"
        missing = sorted(set(f["withData"]) - set(f["drawn"]))
        assert not missing, f"figure {f['id']}: traces {missing} have data but nothing drawn"


def test_edge_labels_do_not_overlap_in_the_browser(record):
    graphs = [f for f in record["figures"] if f["labels"]]
    assert sorted(len(f["labels"]) for f in graphs) == [6, 6, 6, 6, 16, 16, 16]  # 4 nb201 cells, 3 DARTS pairs
    for f in graphs:
        by_subplot: dict[str, list[dict]] = {}
        for label in f["labels"]:
            assert label["bg"] and label["textBox"], label
            x0, y0, x1, y1 = label["textBox"]
            assert x1 - x0 > 5 and y1 - y0 > 5, label  # rendered, not empty
            # the Python layout's font bound holds for the font the browser used
            assert x1 - x0 <= text_width_px(label["text"], LABEL_FONT_PX) + 0.5, label
            by_subplot.setdefault(label["xref"], []).append(label)
        for labels in by_subplot.values():
            for i, a in enumerate(labels):
                for b in labels[i + 1:]:
                    assert not boxes_overlap(a["bg"], b["bg"]), (a, b)
                    assert not boxes_overlap(a["textBox"], b["textBox"]), (a, b)


def test_label_boxes_are_where_python_places_them(record):
    """The Python geometry (`label_boxes`) predicts the centres the browser draws (within 2 px)."""
    from itnas.genotype import Genotype

    nb = next(f for f in record["figures"] if len(f["labels"]) == 6)
    cell = NB201_CELLS[("itnas", 0)]["marginal"][0]  # the first nb201 run's genotype
    predicted = dict(label_boxes(genotype_figure(Genotype.from_nb201_string(cell), "t"))["x"])
    for label in nb["labels"]:
        left, top = label["svg"][:2]
        x0, y0, x1, y1 = label["bg"]
        px0, py0, px1, py1 = predicted[label["name"]]
        assert abs((x0 + x1) / 2 - left - (px0 + px1) / 2) < 2 and abs((y0 + y1) / 2 - top - (py0 + py1) / 2) < 2


def test_the_trajectory_figure_is_drawn_with_its_bands_and_reference_lines(record):
    """The nb201 search trajectories as users see them: one panel per data set, per method its mean line and its
    ± std band drawn, the table best and the published numbers drawn as lines and named in the legend."""
    from itnas.evaluators.nb201_report import published_nb201

    fig = next(f for f in record["figures"] if f["title"].startswith("NAS-Bench-201 test accuracy of the cell "
                                                                      "derived after each search epoch"))
    drawn = {(fig["names"][i], fig["xaxes"][i]) for i in fig["drawn"]}
    references = ["table best", *(f"published: {m}" for m, _, _ in published_nb201())]
    for xaxis in ("x", "x2", "x3"):
        for method in ("itnas", "darts"):
            assert {(method, xaxis), (f"{method} + std", xaxis), (f"{method} - std", xaxis)} <= drawn
        for name in references:
            assert (name, xaxis) in drawn
    assert fig["legend"] == ["itnas", "darts", *references]
    assert "published: GDAS" in fig["legend"]


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy: darts has no spread
def test_the_pair_table_is_shown_with_its_numbers_and_readings(record):
    from scipy import stats

    table = next(t for t in record["tables"] if "pairwise comparison over seeds" in t["caption"])
    x0, y0, x1, y1 = table["rect"]
    assert x1 - x0 > 300 and y1 - y0 > 50  # laid out, not hidden
    header, *rows = table["rows"]
    assert header[:4] == ["comparison", "data set", "n", "mean (%)"] and header[-1] == "what the data support"
    assert [r[:3] for r in rows] == [["itnas vs darts", name, "2 / 2"]
                                     for name in ("CIFAR-10", "CIFAR-100", "ImageNet16-120")]
    a = [NB201_CELLS[("itnas", s)]["marginal"][1] for s in (0, 1)]
    b = [NB201_CELLS[("darts", s)]["marginal"][1] for s in (0, 1)]
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert rows[0][5] == f"[{ci.low:+.2f}, {ci.high:+.2f}]"
    assert all("at n=2 vs 2" in r[-1] for r in rows)
    trajectory = next(t for t in record["tables"] if "search trajectories" in t["caption"])
    assert trajectory["rows"][0] == ["method", "data set", "n", "epoch 1", "epoch 2"]


def test_the_probe_reports_script_errors(tmp_path):
    """The harness itself: a page that throws is reported, not passed."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><title>t</title></head><body><script>undefinedFunction();</script>"
                    "</body></html>")
    errors = render(page, tmp_path)["errors"]
    assert len(errors) == 1 and "undefinedFunction" in errors[0]
