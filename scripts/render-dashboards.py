#!/usr/bin/env python3
"""Draws hubwatch's Grafana dashboards (deploy/grafana/*.json) as PNG images from a running
Prometheus, laid out on the dashboards' grid, so a person can look at what the panels show
without a Grafana. These are renderings of the dashboards' queries with matplotlib, not
Grafana screenshots: panel types are approximated (time series, stat, bar gauge, table).

Every target of every panel is run through Prometheus's HTTP API (query_range for time
series and the stat sparklines, an instant query for stats, bar gauges and tables), with
the template variables as "All" (`.*`) unless --var sets them, and $__rate_interval as
--rate-interval.

A stack to point it at: the dashboards test keeps everything it starts (hubwatch over
the emulator with the demo's estate, a Kafka replica, sinks, Prometheus) running when asked:

    HUBWATCH_DASHBOARDS_HOLD=900 cargo test --test dashboards every_panel -- --nocapture
    # prints: dashboards: holding the stack 900 s; Prometheus at http://127.0.0.1:PORT
    .venv/bin/python scripts/render-dashboards.py --prometheus http://127.0.0.1:PORT \
        --minutes 10 --out docs/screenshots

Or `cargo run --release -- demo` with any Prometheus scraping 127.0.0.1:9393 (the demo has
no Kafka source, sinks or blob ownership: those panels stay empty).

Needs matplotlib (scripts/setup-test-deps.sh installs it into .venv).
"""

import argparse
import json
import math
import os
import re
import sys
import time
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARDS = [
    os.path.join(REPO, "deploy/grafana/azure-ml-overview.json"),
    os.path.join(REPO, "deploy/grafana/hubwatch-operations.json"),
]

# Grafana's dark theme and its classic palette.
BG = "#111217"
PANEL = "#181b1f"
BORDER = "#2c3235"
TEXT = "#ccccdc"
DIM = "#8e8e9a"
GRID = "#25282d"
PALETTE = ["#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9",
           "#705DA0", "#37872D", "#FADE2A", "#447EBC", "#C15C17", "#890F02", "#0A437C",
           "#6D1F62", "#584477", "#B7DBAB", "#F4D598", "#70DBED", "#F9BA8F", "#F29191",
           "#82B5D8", "#E5A8E2", "#AEA2E0"]
COLORS = {"green": "#73BF69", "orange": "#FF9830", "red": "#F2495C", "yellow": "#FADE2A",
          "blue": "#5794F2"}

# One grid unit: Grafana's 24 columns over about 1,600 px, rows of 30 px.
UNIT_W_IN = 0.68
UNIT_H_IN = 0.33


class Prometheus:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def get(self, path, params):
        q = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{q}", timeout=30) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]["result"]

    def range(self, expr, start, end, step):
        return self.get("/api/v1/query_range",
                        {"query": expr, "start": start, "end": end, "step": step})

    def instant(self, expr, at):
        return self.get("/api/v1/query", {"query": expr, "time": at})


def substitute(text, variables, rate_interval, range_s):
    text = text.replace("${__rate_interval}", rate_interval).replace("$__rate_interval", rate_interval)
    text = text.replace("$__interval", rate_interval).replace("$__range", f"{int(range_s)}s")

    def var(m):
        name = m.group(1) or m.group(2)
        return variables.get(name, ".*")
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", var, text)


def legend(fmt, labels):
    if not fmt or fmt == "__auto":
        name = labels.get("__name__", "")
        rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
        return f"{name}{{{rest}}}" if rest else (name or "value")
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()


def fmt_value(v, unit, short=False):
    if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return "–"
    if unit == "percentunit":
        return f"{v * 100:.1f}%"
    if unit == "percent":
        return f"{v:.1f}%"
    if unit in ("bytes", "Bps"):
        suffix = "/s" if unit == "Bps" else ""
        for u in ["B", "KiB", "MiB", "GiB", "TiB"]:
            if abs(v) < 1024 or u == "TiB":
                return f"{v:.0f} {u}{suffix}" if u == "B" else f"{v:.1f} {u}{suffix}"
            v /= 1024
    if unit == "s":
        a = abs(v)
        if a >= 86400:
            return f"{v / 86400:.1f} d"
        if a >= 3600:
            return f"{v / 3600:.1f} h"
        if a >= 60:
            return f"{v / 60:.1f} min"
        if a >= 1 or a == 0:
            return f"{v:.1f} s" if a < 10 and a != 0 else f"{v:.0f} s"
        return f"{v * 1000:.0f} ms"
    a = abs(v)
    for div, s in [(1e9, " Bil"), (1e6, " Mil"), (1e3, " K")]:
        if a >= div:
            return f"{v / div:.1f}{s}"
    if a == 0 or a >= 100 or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.2f}" if a >= 1 or short else f"{v:.3g}"


def threshold_color(v, steps):
    color = COLORS["green"]
    for s in steps or []:
        if s.get("value") is None or (v is not None and not math.isnan(v) and v >= s["value"]):
            color = COLORS.get(s["color"], s["color"])
    return color


def no_data(ax):
    ax.text(0.5, 0.5, "No data", color=DIM, ha="center", va="center", transform=ax.transAxes, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_timeseries(ax, panel, results, start, end):
    defaults = panel["fieldConfig"]["defaults"]
    custom = defaults.get("custom", {})
    unit = defaults.get("unit", "short")
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    bars = custom.get("drawStyle") == "bars"
    overrides = panel["fieldConfig"].get("overrides", [])
    dashed_res, widths, right_refs = [], [], {}
    for o in overrides:
        props = {p["id"]: p["value"] for p in o["properties"]}
        if o["matcher"]["id"] == "byRegexp" and "custom.lineStyle" in props:
            dashed_res.append(re.compile(o["matcher"]["options"]))
        if o["matcher"]["id"] == "byRegexp" and "custom.lineWidth" in props:
            widths.append((re.compile(o["matcher"]["options"]), props["custom.lineWidth"]))
        if o["matcher"]["id"] == "byFrameRefID" and props.get("custom.axisPlacement") == "right":
            right_refs[o["matcher"]["options"]] = props.get("unit", unit)
    ax2 = None
    series = []  # (name, ref, xs, ys)
    for ref, fmt, rows in results:
        for r in rows:
            xs = [float(t) for t, _ in r["values"]]
            ys = [float(v) for _, v in r["values"]]
            series.append((legend(fmt, r["metric"]), ref, xs, ys))
    if not series:
        no_data(ax)
        return
    series.sort(key=lambda s: (s[1], s[0]))
    base = {}
    width = max((end - start) / 120, 1)
    lines = []
    for i, (name, ref, xs, ys) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        target_ax = ax
        if ref in right_refs:
            if ax2 is None:
                ax2 = ax.twinx()
                for sp in ax2.spines.values():
                    sp.set_visible(False)
                ax2.tick_params(colors=DIM, labelsize=7, length=0)
                ax2.yaxis.set_major_formatter(FuncFormatter(lambda v, _p, u=right_refs[ref]: fmt_value(v, u, True)))
                ax2.yaxis.set_major_locator(MaxNLocator(5))
            target_ax = ax2
        dashed = any(rx.search(name) for rx in dashed_res)
        thin = len(series) > 12 and not dashed
        if stacked and ref not in right_refs:
            lows = [base.get(x, 0.0) for x in xs]
            highs = [lo + (y if not math.isnan(y) else 0) for lo, y in zip(lows, ys)]
            for x, h in zip(xs, highs):
                base[x] = h
            target_ax.fill_between(xs, lows, highs, color=color, alpha=0.35, linewidth=0, step="post" if bars else None)
            (ln,) = target_ax.plot(xs, highs, color=color, linewidth=1, drawstyle="steps-post" if bars else "default")
        elif bars:
            ln = target_ax.bar(xs, ys, width=width, color=color, alpha=0.7, align="edge")
        else:
            width = next((w for rx, w in widths if rx.search(name)), None)
            (ln,) = target_ax.plot(xs, ys, color=color,
                                   linewidth=width * 0.9 if width else (0.8 if thin else 1.3),
                                   linestyle=(0, (4, 3)) if dashed else "-",
                                   alpha=0.75 if thin and not width else 1, zorder=3 if width else 2)
        lines.append((ln, name))
    ax.set_xlim(start, end)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: fmt_value(v, unit, True)))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    if defaults.get("min") == 0:
        # After plotting: a limit set before would stop the axis from fitting the data.
        for a in [ax] + ([ax2] if ax2 is not None else []):
            a.set_ylim(bottom=0)
    ticks = [t for t in range(int(start) - int(start) % 60 + 60, int(end), 60 * max(1, int((end - start) / 60 / 6)))]
    ax.set_xticks(ticks)
    ax.set_xticklabels([time.strftime("%H:%M", time.localtime(t)) for t in ticks])
    ax.grid(color=GRID, linewidth=0.6)
    ax.set_axisbelow(True)
    # The legend under the graph, as Grafana's bottom legend: the axes give up the room.
    fig = ax.figure
    fig_w, fig_h = fig.get_size_inches()
    pos = ax.get_position()
    width_in = pos.width * fig_w
    ncol = 3 if width_in > 6.5 else 2
    limit = ncol * 3
    shown = lines[:limit]
    more = len(lines) - len(shown)
    chars = int(width_in / ncol * 15)
    labels = [n if len(n) <= chars else n[: chars - 1] + "…" for _, n in shown]
    if more:
        labels[-1] += f"  (+{more} more)"
    rows = math.ceil(len(shown) / ncol)
    room = (rows * 0.125 + 0.04) / fig_h
    for a in [ax] + ([ax2] if ax2 is not None else []):
        a.set_position([pos.x0, pos.y0 + room, pos.width, pos.height - room])
    fig.legend([h for h, _ in shown], labels, loc="upper left", fontsize=6, ncol=ncol, frameon=False,
               labelcolor=TEXT, handlelength=1.2, borderaxespad=0, borderpad=0, labelspacing=0.25,
               columnspacing=1.2, bbox_to_anchor=(pos.x0 - 0.3 / fig_w, pos.y0 + room - 0.2 / fig_h),
               bbox_transform=fig.transFigure)


def draw_stat(ax, panel, instant, sparks):
    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit", "short")
    steps = defaults.get("thresholds", {}).get("steps")
    values = []
    for ref, fmt, rows in instant:
        for r in rows:
            values.append((legend(fmt, r["metric"]) if len(instant) > 1 or len(rows) > 1 else "", float(r["value"][1])))
    ax.set_xticks([])
    ax.set_yticks([])
    if not values:
        no_data(ax)
        return
    # The sparkline of the first series, behind the number.
    for _, _, rows in sparks[:1]:
        for r in rows[:1]:
            xs = [float(t) for t, _ in r["values"]]
            ys = [float(v) for _, v in r["values"]]
            color = threshold_color(values[0][1], steps)
            ax.fill_between(xs, ys, min(ys) if ys else 0, color=color, alpha=0.15, linewidth=0)
            ax.plot(xs, ys, color=color, linewidth=1, alpha=0.6)
            ax.set_xlim(xs[0], xs[-1]) if xs else None
            lo, hi = (min(ys), max(ys)) if ys else (0, 1)
            ax.set_ylim(lo - (hi - lo + 1e-9) * 0.1, hi + (hi - lo + 1e-9) * 2.2)
    n = len(values)
    for i, (name, v) in enumerate(values[:4]):
        x = (i + 0.5) / min(n, 4)
        color = threshold_color(v, steps)
        text = fmt_value(v, unit)
        ax.text(x, 0.52, text, color=color, ha="center", va="center", transform=ax.transAxes,
                fontsize=22 if n == 1 else 13, fontweight="bold")
        if name:
            ax.text(x, 0.18, name, color=DIM, ha="center", va="center", transform=ax.transAxes, fontsize=7)


def draw_bargauge(ax, panel, instant):
    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit", "short")
    steps = defaults.get("thresholds", {}).get("steps")
    bars = []
    for ref, fmt, rows in instant:
        for r in rows:
            bars.append((legend(fmt, r["metric"]), float(r["value"][1])))
    if not bars:
        no_data(ax)
        return
    # As many bars as fit, at least 0.11 in each (Grafana would scroll or shrink them).
    fig_h = ax.figure.get_size_inches()[1]
    fits = max(1, int(ax.get_position().height * fig_h / 0.11))
    more = len(bars) - fits
    bars = bars[:fits]
    size = 7 if len(bars) <= 12 else 6
    top = defaults.get("max") or max((v for _, v in bars), default=1) or 1
    ys = list(range(len(bars)))[::-1]
    ax.barh(ys, [top] * len(bars), color="#22252b", height=0.7)
    ax.barh(ys, [max(v, 0) for _, v in bars], color=[threshold_color(v, steps) for _, v in bars], height=0.7)
    for y, (name, v) in zip(ys, bars):
        ax.text(top * 1.01, y, fmt_value(v, unit), color=threshold_color(v, steps), va="center", fontsize=size,
                fontweight="bold")
    ax.set_yticks(ys)
    ax.set_yticklabels([n for n, _ in bars], fontsize=size, color=TEXT)
    ax.set_xlim(0, top * 1.15)
    ax.set_ylim(-0.5, len(bars) - 0.5)
    ax.set_xticks([])
    if more > 0:
        ax.text(1, -0.02, f"+{more} more", color=DIM, ha="right", va="top", transform=ax.transAxes, fontsize=6)


def draw_table(ax, panel, instant):
    rename, exclude = {}, set()
    for t in panel.get("transformations", []):
        if t["id"] == "organize":
            rename = t["options"].get("renameByName", {})
            exclude = {k for k, v in t["options"].get("excludeByName", {}).items() if v}
    units = {}
    for o in panel["fieldConfig"].get("overrides", []):
        if o["matcher"]["id"] == "byName":
            for p in o["properties"]:
                if p["id"] == "unit":
                    units[o["matcher"]["options"]] = p["value"]
    rows, label_cols = {}, []
    for ref, _fmt, result in instant:
        for r in result:
            labels = {k: v for k, v in r["metric"].items() if k != "__name__"}
            for k in labels:
                if k not in label_cols:
                    label_cols.append(k)
            key = tuple(sorted(labels.items()))
            rows.setdefault(key, dict(labels))[f"Value #{ref}"] = float(r["value"][1])
    ax.set_xticks([])
    ax.set_yticks([])
    if not rows:
        no_data(ax)
        return
    value_cols = [f"Value #{ref}" for ref, _, _ in instant]
    cols = [c for c in label_cols + value_cols if c not in exclude]
    header = [rename.get(c, c) for c in cols]
    body = []
    for key in sorted(rows):
        row = rows[key]
        cells = []
        for c, h in zip(cols, header):
            v = row.get(c)
            cells.append(fmt_value(v, units.get(h, "short")) if c.startswith("Value #") else (v or ""))
        body.append(cells)
    bbox = ax.get_position()
    fig_h = ax.figure.get_size_inches()[1] * bbox.height
    fits = max(1, int(fig_h / 0.2) - 1)
    more = len(body) - fits
    body = body[:fits]
    table = ax.table(cellText=body, colLabels=header, loc="upper center", cellLoc="left", colLoc="left",
                     bbox=[0, max(0.0, 1 - (len(body) + 1) / (fits + 1)), 1, min(1.0, (len(body) + 1) / (fits + 1))])
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    for (r, _c), cell in table.get_celld().items():
        cell.set_edgecolor(BORDER)
        cell.set_facecolor("#22252b" if r == 0 else PANEL)
        cell.get_text().set_color(TEXT if r else "#6e9fff")
    if more > 0:
        ax.text(1, -0.01, f"+{more} more rows", color=DIM, ha="right", va="top", transform=ax.transAxes, fontsize=6)


def render(dashboard_path, prom, out_dir, minutes, rate_interval, variables):
    with open(dashboard_path) as f:
        d = json.load(f)
    end = time.time()
    start = end - minutes * 60
    step = max(1, int(minutes * 60 / 240))
    panels = d["panels"]
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    header_in = 0.55
    fig_w = 24 * UNIT_W_IN
    fig_h = bottom * UNIT_H_IN + header_in
    fig = plt.figure(figsize=(fig_w, fig_h), facecolor=BG, dpi=100)
    vars_shown = ", ".join(
        f"{v['name']}={variables.get(v['name'], 'All')}" for v in d["templating"]["list"] if v["type"] == "query")
    fig.text(0.008, 1 - 0.18 / fig_h, d["title"], color=TEXT, fontsize=14, fontweight="bold", va="top")
    fig.text(0.008, 1 - 0.42 / fig_h,
             f"Rendered from the dashboard's queries by scripts/render-dashboards.py (matplotlib), not a Grafana "
             f"screenshot · last {minutes} min · {vars_shown} · $__rate_interval={rate_interval}",
             color=DIM, fontsize=8, va="top")
    from matplotlib.patches import FancyBboxPatch

    gap = 0.05  # between panels, inches
    for p in panels:
        g = p["gridPos"]
        # The panel's box, in inches from the top left.
        x0, y0 = g["x"] * UNIT_W_IN + gap, header_in + g["y"] * UNIT_H_IN + gap
        w, h = g["w"] * UNIT_W_IN - 2 * gap, g["h"] * UNIT_H_IN - 2 * gap
        if p["type"] == "row":
            fig.text(x0 / fig_w, 1 - (y0 + 0.2) / fig_h, p["title"], color=TEXT, fontsize=11, fontweight="bold")
            continue
        fig.patches.append(FancyBboxPatch((x0 / fig_w, 1 - (y0 + h) / fig_h), w / fig_w, h / fig_h,
                                          boxstyle="round,pad=0,rounding_size=0.002", transform=fig.transFigure,
                                          facecolor=PANEL, edgecolor=BORDER, linewidth=0.8, zorder=-10))
        fig.text((x0 + 0.1) / fig_w, 1 - (y0 + 0.08) / fig_h, p["title"], color=TEXT, fontsize=9,
                 fontweight="bold", va="top")
        # Room inside the box: the title on top; tick labels left and below; the legend
        # under a time series; names left of a bar gauge.
        left, right, top, below = 0.1, 0.1, 0.32, 0.08
        kind = p["type"]
        if kind == "timeseries":
            left, below = 0.55, 0.22
            if any(o["matcher"]["id"] == "byFrameRefID" for o in p["fieldConfig"].get("overrides", [])):
                right = 0.6
        elif kind == "bargauge":
            left, right = min(0.42 * w, 2.3), 0.1
        ax = fig.add_axes([(x0 + left) / fig_w, 1 - (y0 + h - below) / fig_h,
                           (w - left - right) / fig_w, (h - top - below) / fig_h])
        ax.set_facecolor(PANEL)
        for sp in ax.spines.values():
            sp.set_visible(False)
        ax.tick_params(colors=DIM, labelsize=7, length=0)
        targets = [(t["refId"], t.get("legendFormat", ""),
                    substitute(t["expr"], variables, rate_interval, end - start)) for t in p["targets"]]
        try:
            if p["type"] == "timeseries":
                results = [(ref, fmt, prom.range(e, start, end, step)) for ref, fmt, e in targets]
                draw_timeseries(ax, p, results, start, end)
            elif p["type"] == "stat":
                instant = [(ref, fmt, prom.instant(e, end)) for ref, fmt, e in targets]
                sparks = [(ref, fmt, prom.range(e, start, end, step)) for ref, fmt, e in targets]
                draw_stat(ax, p, instant, sparks)
            elif p["type"] == "bargauge":
                draw_bargauge(ax, p, [(ref, fmt, prom.instant(e, end)) for ref, fmt, e in targets])
            elif p["type"] == "table":
                draw_table(ax, p, [(ref, fmt, prom.instant(e, end)) for ref, fmt, e in targets])
            else:
                no_data(ax)
        except Exception as e:  # a panel that fails shows it, like Grafana's error corner
            ax.text(0.5, 0.5, f"error: {e}"[:200], color=COLORS["red"], ha="center", va="center",
                    transform=ax.transAxes, fontsize=7, wrap=True)
    name = os.path.splitext(os.path.basename(dashboard_path))[0]
    path = os.path.join(out_dir, f"{name}.png")
    fig.savefig(path, facecolor=BG)
    plt.close(fig)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--out", default=os.path.join(REPO, "docs/screenshots"))
    ap.add_argument("--minutes", type=float, default=15, help="time range, ending now")
    ap.add_argument("--rate-interval", default="30s", help="what $__rate_interval becomes")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=REGEX",
                    help="a template variable's value (default: All, i.e. .*)")
    ap.add_argument("dashboards", nargs="*", default=DASHBOARDS)
    args = ap.parse_args()
    variables = dict(v.split("=", 1) for v in args.var)
    os.makedirs(args.out, exist_ok=True)
    prom = Prometheus(args.prometheus)
    for path in args.dashboards:
        print(render(path, prom, args.out, args.minutes, args.rate_interval, variables))


if __name__ == "__main__":
    sys.exit(main())
