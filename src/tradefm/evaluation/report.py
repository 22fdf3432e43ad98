"""The realism report: a real window against the rollouts of several generators, as a table and plots.

``out_dir/table.md`` has the layout of the paper's tables: one row per metric and statistic (KS and W1 with
bootstrap 95% intervals, then the LOB-Bench L1 scores), one column per generator, and the real-vs-real floor as
the last column. Lower is better everywhere; the lowest generator value of a row is bold (the floor is the
reference the generators are measured against, so it does not compete). The table is a pure function of the
inputs and the seed: the same inputs give a byte-identical file.

Below it, the book dynamics (:mod:`.dynamics`) of the real window, of each generator and of the floor's other
real window: where passive adds land, which orders cancels take, and what narrows and widens the spread.

``out_dir/report.html`` shows the same tables, the stylized facts side by side and the plots (PNG, matplotlib's
Agg canvas without pyplot, so nothing global is touched): 10 s return distributions, autocorrelations of
returns and absolute returns, spread and inter-arrival histograms, and mid-price paths of rollouts over the real
window.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..events import EventDay
from .dynamics import Dynamics, dynamics
from .metrics import (
    DISTRIBUTIONS,
    L1_SCORES,
    LABELS,
    MetricRow,
    book_series,
    compare,
    compare_samples,
    mid_on_grid,
    pooled,
    samples,
)
from .stylized import ACF_GRID_S, StylizedFacts, side_by_side, stylized_facts

FLOOR = "real vs real"
DECODED = "real tokens, decoded"  # the real window's own tokens decoded closed loop: what a perfect model would give
REFERENCES = (DECODED, FLOOR)  # columns that measure the data and the tokens, not generators: never bold
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
PNG_META = {"Software": None}  # no library version in the files: the same plot gives the same bytes


def _fmt(row: MetricRow | None, bold: bool) -> str:
    if row is None or not math.isfinite(row.value):
        return "–"
    value = f"**{row.value:.3f}**" if bold else f"{row.value:.3f}"
    return f"{value} [{row.low:.3f}, {row.high:.3f}]" if math.isfinite(row.low) else value


def table_rows(columns: Mapping[str, Sequence[MetricRow]]) -> list[tuple[str, list[str]]]:
    """(row label, cell per column) for every metric, group 'all' only; the lowest generator value is bold."""
    keyed = {name: {(r.metric, r.stat): r for r in rows if r.group == "all"} for name, rows in columns.items()}
    order = [(m, s) for s in ("KS", "W1") for m in DISTRIBUTIONS] + [(m, "L1") for m in L1_SCORES]
    out = []
    for metric, stat in order:
        cells = {name: keyed[name].get((metric, stat)) for name in columns}
        rounded = {n: round(r.value, 3) for n, r in cells.items() if r is not None and math.isfinite(r.value)
                   and n not in REFERENCES}
        best = min(rounded.values()) if rounded else None
        out.append((f"{stat} · {LABELS[metric]}",
                    [_fmt(cells[n], n in rounded and rounded[n] == best) for n in columns]))
    return out


def head_to_head(columns: Mapping[str, Sequence[MetricRow]]) -> list[list[str]]:
    """For each pair of generators (in column order), the rows of each statistic where the first is lower than the
    second, after rounding to 3 decimals as the bold marks are: ``["A vs B", "3 of 7", "6 of 7", "4 of 6"]``."""
    keyed = {name: {(r.metric, r.stat): round(r.value, 3) for r in rows if r.group == "all" and math.isfinite(r.value)}
             for name, rows in columns.items() if name not in REFERENCES}
    rows = []
    for i, a in enumerate(keyed):
        for b in list(keyed)[i + 1:]:
            cells = [f"{a} vs {b}"]
            for stat, metrics in (("KS", DISTRIBUTIONS), ("W1", DISTRIBUTIONS), ("L1", L1_SCORES)):
                both = [(keyed[a][m, stat], keyed[b][m, stat]) for m in metrics
                        if (m, stat) in keyed[a] and (m, stat) in keyed[b]]
                cells.append(f"{sum(x < y for x, y in both)} of {len(both)}")
            rows.append(cells)
    return rows


def markdown_table(title: str, columns: Mapping[str, Sequence[MetricRow]], about: str = "") -> str:
    names = list(columns)
    lines = [f"# {title}", "", *([about, ""] if about else []),
             "KS: two-sample Kolmogorov–Smirnov statistic. W1: Wasserstein-1 distance after normalising both samples "
             "by the real sample's mean and standard deviation. L1: half the L1 distance between histograms on "
             "Freedman–Diaconis bins of the pooled data (LOB-Bench). Brackets: bootstrap 95% intervals. Lower is "
             f"better; bold: the lowest generator value of the row. '{DECODED}': the real window's own tokens "
             "decoded against the simulated book, as a model's samples are (the tokenizer's and decoder's share of "
             f"the error). '{FLOOR}': the floor, two parts of the real data against each other.", "",
             "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in table_rows(columns)]
    pairs = head_to_head(columns)
    if pairs:
        lines += ["", "Head to head: the rows where the first generator is lower.", "",
                  "| | KS rows | W1 rows | L1 rows |", "|---|---|---|---|",
                  *("| " + " | ".join(r) + " |" for r in pairs)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- plots


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, metadata=PNG_META)


def _hist_lines(ax: object, data: Mapping[str, np.ndarray], bins: np.ndarray, log: bool = False) -> None:
    centres = (bins[:-1] + bins[1:]) / 2
    for i, (name, x) in enumerate(data.items()):
        if len(x) == 0:
            continue
        dens, _ = np.histogram(x, bins=bins, density=True)
        style = {"color": "black", "lw": 2.0} if i == 0 else {"color": COLORS[(i - 1) % len(COLORS)], "lw": 1.2}
        ax.step(centres, np.where(dens > 0, dens, np.nan) if log else dens, where="mid", label=name, **style)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)


def plot_returns(path: Path, data: Mapping[str, np.ndarray]) -> None:
    """10 s log mid returns in units of the real standard deviation, density on a log scale."""
    real = next(iter(data.values()))
    sd = real.std() if len(real) and real.std() > 0 else 1.0
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    _hist_lines(ax, {k: v / sd for k, v in data.items()}, np.linspace(-10, 10, 81), log=True)
    ax.set_xlabel("10 s log mid return / real std")
    ax.set_ylabel("density (log)")
    ax.set_title("Return distribution, 10 s")
    _save(fig, path)


def plot_acf(path: Path, facts: Mapping[str, StylizedFacts]) -> None:
    fig = Figure(figsize=(11, 4.2))
    for j, (attr, title) in enumerate((("acf_returns", "returns"), ("acf_abs", "absolute returns"))):
        ax = fig.add_subplot(1, 2, j + 1)
        for i, (name, f) in enumerate(facts.items()):
            acf = getattr(f, attr)
            style = {"color": "black", "lw": 2.0} if i == 0 else {"color": COLORS[(i - 1) % len(COLORS)], "lw": 1.2}
            ax.plot(np.arange(1, len(acf) + 1) * ACF_GRID_S, acf, label=name, **style)
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_xlabel("lag (s)")
        ax.set_title(f"Autocorrelation of {title} ({ACF_GRID_S:g} s grid)")
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_spread(path: Path, data: Mapping[str, np.ndarray]) -> None:
    """Spread histograms up to 1.5 times the real 99.5% quantile; wider spreads count in the last bin."""
    real = next(iter(data.values()))
    top = max(2.0, np.ceil(1.5 * float(np.quantile(real, 0.995)))) if len(real) else 10.0
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    _hist_lines(ax, {k: np.minimum(v, top) for k, v in data.items()}, np.arange(0.5, top + 1.0))
    ax.set_xlabel(f"spread (ticks), after each event (last bin: {top:g} or more)")
    ax.set_ylabel("density")
    ax.set_title("Spread")
    _save(fig, path)


def plot_inter_arrival(path: Path, data: Mapping[str, np.ndarray]) -> None:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    _hist_lines(ax, data, np.linspace(-9.5, 2.5, 61))
    ax.set_xlabel("log10 inter-arrival time of order events (s; 0 shown as 1 ns)")
    ax.set_ylabel("density")
    ax.set_title("Inter-arrival times")
    _save(fig, path)


def plot_paths(path: Path, real: Mapping[str, np.ndarray], generated: Mapping[str, Sequence[Mapping]],
               price_scale: int, max_paths: int) -> None:
    """Mid price (1 s grid) against minutes since the real window's first event."""
    t0 = real["ts"][0] if len(real["ts"]) else 0
    fig = Figure(figsize=(10, 5))
    ax = fig.add_subplot()
    for i, (name, series) in enumerate(generated.items()):
        for j, s in enumerate(series[:max_paths]):
            g, m = mid_on_grid(s, 1.0)
            ax.plot((g - t0) / 6e10, m / price_scale, color=COLORS[i % len(COLORS)], lw=0.8, alpha=0.7,
                    label=name if j == 0 else None)
    g, m = mid_on_grid(real, 1.0)
    ax.plot((g - t0) / 6e10, m / price_scale, color="black", lw=1.8, label="real")
    ax.set_xlabel("minutes since the window start")
    ax.set_ylabel("mid price")
    ax.set_title(f"Mid-price paths (up to {max_paths} rollouts per generator)")
    ax.legend(fontsize=8)
    _save(fig, path)


# ---------------------------------------------------------------- the report


def _span(day: EventDay) -> str:
    """First to last market event, in the venue's local time."""
    ts = day.table.column("ts").to_numpy()[~day.table.column("snapshot").to_numpy()]
    if len(ts) == 0:
        return "(no events)"
    tz = ZoneInfo(day.instrument.timezone)
    a, b = (datetime.fromtimestamp(int(t) // 1_000_000_000, tz).strftime("%H:%M:%S") for t in (ts[0], ts[-1]))
    return f"{a}–{b} {day.instrument.timezone}"


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(c: str) -> str:
        text = html.escape(c)
        while "**" in text:  # markdown bold
            text = text.replace("**", "<b>", 1).replace("**", "</b>", 1)
        return text

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(out_dir: str | Path, real: EventDay, generated: Mapping[str, Sequence[EventDay]],
                 floor_pair: tuple[EventDay, EventDay] | None = None, seed: int = 0, n_boot: int = 200,
                 max_paths: int = 5, decoded: Sequence[EventDay] | None = None) -> Path:
    """Write ``table.md``, the PNG plots and ``report.html`` into ``out_dir``; return the html's path.

    ``real`` is the real window (e.g. :func:`~.metrics.window`), ``generated`` maps a generator's name to its
    rollouts (pooled), ``floor_pair`` two real windows compared as the 'real vs real' column, ``decoded`` the
    real window's tokens decoded closed loop (:func:`tradefm.generation.rollout.decode_real`), a column of
    the table and the book dynamics beside the generators."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if decoded is not None:
        generated = {**generated, DECODED: decoded}
    real_series = book_series(real)
    real_s = samples(real, real_series)
    gen_series = {name: [book_series(d) for d in days] for name, days in generated.items()}
    gen_s = {name: pooled(samples(d, s) for d, s in zip(days, gen_series[name], strict=True))
             for name, days in generated.items()}
    columns: dict[str, list[MetricRow]] = {
        name: compare_samples(real_s, gen_s[name], seed=seed, n_boot=n_boot) for name in generated}
    if floor_pair is not None:
        columns[FLOOR] = compare(floor_pair[0], [floor_pair[1]], seed=seed, n_boot=n_boot)
    inst = real.instrument
    title = f"Realism: {inst.key} {real.date}"
    about = (f"Real window {_span(real)}, {len(real_series['ts'])} market events. Generators (rollouts pooled): "
             + ", ".join(f"{n} ({len(d)} rollouts, {sum(len(s['ts']) for s in gen_series[n])} events)"
                         for n, d in generated.items())
             + (f". Floor: {_span(floor_pair[0])} against {_span(floor_pair[1])}" if floor_pair else "")
             + f". Seed {seed}, {n_boot} bootstrap resamples.")
    dyn = {"real": dynamics([real]), **{n: dynamics(days) for n, days in generated.items()}}
    if floor_pair is not None:
        dyn[f"real, {_span(floor_pair[0])}"] = dynamics([floor_pair[0]])
    dyn_rows = Dynamics.rows(dyn)
    dyn_md = ["", "## Book dynamics", "", "| | " + " | ".join(dyn) + " |", "|---|" + "---|" * len(dyn),
              *("| " + " | ".join(row) + " |" for row in dyn_rows)]
    (out / "table.md").write_text(markdown_table(title, columns, about) + "\n".join(dyn_md) + "\n", encoding="utf-8")

    facts = {"real": stylized_facts([real_series]), **{n: stylized_facts(s) for n, s in gen_series.items()}}
    plot_returns(out / "returns_10s.png", {"real": real_s["returns_10s"],
                                           **{n: s["returns_10s"] for n, s in gen_s.items()}})
    plot_acf(out / "acf.png", facts)
    plot_spread(out / "spread.png", {"real": real_s["spread"], **{n: s["spread"] for n, s in gen_s.items()}})
    plot_inter_arrival(out / "inter_arrival.png", {"real": real_s["log_inter_arrival"],
                                                   **{n: s["log_inter_arrival"] for n, s in gen_s.items()}})
    plot_paths(out / "price_paths.png", real_series, gen_series, inst.price_scale, max_paths)

    fact_rows = [[label, *("–" if not math.isfinite(v) else f"{v:.3f}" for v in vals)]
                 for label, vals in side_by_side(facts)]
    page = [
        "<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(about)}</p>",
        "<h2>Distances to the real window</h2>",
        "<p>Lower is better; bold: the lowest generator value of the row. Brackets: bootstrap 95% intervals. "
        f"'{DECODED}': the real tokens decoded closed loop (what a perfect model would give); '{FLOOR}': two "
        "parts of the real data against each other.</p>",
        _html_table(["metric", *columns], [[label, *cells] for label, cells in table_rows(columns)]),
        "<p>Head to head: the rows where the first generator is lower.</p>",
        _html_table(["", "KS rows", "W1 rows", "L1 rows"], head_to_head(columns)),
        "<h2>Book dynamics</h2>",
        "<p>Where passive adds land against their side's best quote, which orders cancels take, and how many ticks "
        "per minute the spread narrows and widens (the two differ only by the spread's net change).</p>",
        _html_table(["", *dyn], dyn_rows),
        "<h2>Stylized facts</h2>", _html_table(["fact", *facts], fact_rows),
        "<h2>Plots</h2>",
        *(f"<h3>{html.escape(cap)}</h3><img src='{name}' alt='{html.escape(cap)}'>" for name, cap in (
            ("returns_10s.png", "10 s return distributions"), ("acf.png", "Autocorrelation of returns"),
            ("spread.png", "Spread"), ("inter_arrival.png", "Inter-arrival times"),
            ("price_paths.png", "Mid-price paths"))),
        "</body></html>",
    ]
    path = out / "report.html"
    path.write_text("\n".join(page) + "\n", encoding="utf-8")
    return path
