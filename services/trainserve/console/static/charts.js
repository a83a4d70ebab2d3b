/* Line charts in SVG, drawn here (no chart library): axes with round ticks, one polyline per
   series, a legend below. Every series of a chart shares its axes: comparing jobs on one
   chart puts them on the same y-scale. Colours are the Okabe–Ito palette (readable with
   colour-blindness) and each series also has its own dash pattern. */
"use strict";

const TSChart = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 480, H = 250, M = {left: 56, right: 14, top: 12, bottom: 34};
  const COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#7f7f7f"];
  const DASHES = ["", "6 3", "2 3", "8 3 2 3", "1 2", "10 4", "4 4", "12 2 2 2"];
  let made = 0;

  function svg(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** About `count` round tick values covering [lo, hi]. */
  function ticks(lo, hi, count) {
    if (!(hi > lo)) { const pad = Math.abs(lo) * 0.1 || 1; lo -= pad; hi += pad; }
    const raw = (hi - lo) / count;
    const step0 = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((f) => f * step0).find((s) => raw <= s) || step0 * 10;
    const first = Math.floor(lo / step) * step, last = Math.ceil(hi / step) * step;
    const out = [];
    for (let v = first; v <= last + step / 2; v += step) out.push(Number(v.toPrecision(12)));
    return out;
  }

  function extent(series, axis) {
    let lo = Infinity, hi = -Infinity;
    for (const s of series) for (const p of s.points) {
      const v = p[axis];
      if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
    return [lo, hi];
  }

  function label(v) {
    const abs = Math.abs(v);
    if (v !== 0 && (abs >= 1e5 || abs < 1e-3)) return v.toExponential(1);
    return String(Number(v.toPrecision(4)));
  }

  /** A chart in `container` (a <figure class="chart"> is appended); returns {update(series)}.
      series: [{name, points: [[epoch, value], ...]}] in a fixed order (it picks the colour). */
  function line(container, title, xLabel) {
    const id = `chart-${++made}`;
    const figure = TSChartDom.figure(id, title);
    container.append(figure);
    const plot = figure.querySelector("svg");
    const legend = figure.querySelector("ul");
    return {figure, update: (series) => draw(plot, legend, id, title, xLabel, series)};
  }

  function draw(plot, legend, id, title, xLabel, series) {
    const shown = series.filter((s) => s.points.length);
    const [x0, x1] = shown.length ? extent(shown, 0) : [0, 1];
    const [y0, y1] = shown.length ? extent(shown, 1) : [0, 1];
    const xAll = ticks(x0, Math.max(x1, x0 + 1), 6), yt = ticks(y0, y1, 5);
    const xt = xAll.filter((v) => Number.isInteger(v));  // epochs are whole
    const xs = [xAll[0], xAll[xAll.length - 1]], ys = [yt[0], yt[yt.length - 1]];
    const px = (v) => M.left + (v - xs[0]) / ((xs[1] - xs[0]) || 1) * (W - M.left - M.right);
    const py = (v) => H - M.bottom - (v - ys[0]) / ((ys[1] - ys[0]) || 1) * (H - M.top - M.bottom);
    const nodes = [svg("title", {id: `${id}-t`}, title),
                   svg("desc", {id: `${id}-d`}, describe(series, xLabel))];
    for (const v of yt) {
      nodes.push(svg("line", {class: "grid", x1: M.left, x2: W - M.right, y1: py(v), y2: py(v)}));
      nodes.push(svg("text", {class: "tick", x: M.left - 6, y: py(v) + 4, "text-anchor": "end"}, label(v)));
    }
    const every = Math.ceil(xt.length / 8);
    xt.forEach((v, i) => {
      if (i % every) return;
      nodes.push(svg("text", {class: "tick", x: px(v), y: H - M.bottom + 15, "text-anchor": "middle"}, label(v)));
    });
    nodes.push(svg("text", {class: "tick", x: (M.left + W - M.right) / 2, y: H - 4, "text-anchor": "middle"}, xLabel));
    nodes.push(svg("line", {class: "axis", x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom}));
    nodes.push(svg("line", {class: "axis", x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom}));
    series.forEach((s, i) => { if (s.points.length) nodes.push(...path(s, i, px, py)); });
    plot.replaceChildren(...nodes);
    plot.dataset.points = String(shown.reduce((n, s) => n + s.points.length, 0));
    legend.replaceChildren(...series.map((s, i) => TSChartDom.legendItem(s.name, style(i))));
  }

  function style(i) {
    return {stroke: COLORS[i % COLORS.length], dash: DASHES[i % DASHES.length]};
  }

  function path(s, i, px, py) {
    const {stroke, dash} = style(i);
    const finite = s.points.filter((p) => Number.isFinite(p[1]));
    if (finite.length === 1) {
      return [svg("circle", {cx: px(finite[0][0]), cy: py(finite[0][1]), r: 3.5, fill: stroke})];
    }
    const attrs = {class: "series", stroke, points: finite.map((p) => `${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(" ")};
    if (dash) attrs["stroke-dasharray"] = dash;
    return [svg("polyline", attrs)];
  }

  /** What a screen reader says of the chart: each series' last point and its best. */
  function describe(series, xLabel) {
    return series.filter((s) => s.points.length).map((s) => {
      const last = s.points[s.points.length - 1];
      return `${s.name}: ${s.points.length} points, last ${label(last[1])} at ${xLabel} ${last[0]}`;
    }).join("; ") || "no points yet";
  }

  return {line, style, ticks};
})();

/* The chart's HTML around the SVG: a <figure> with a caption and a legend list. */
const TSChartDom = (() => {
  const NS = "http://www.w3.org/2000/svg";

  function figure(id, title) {
    const fig = document.createElement("figure");
    fig.className = "chart";
    fig.dataset.metric = title;
    const caption = document.createElement("figcaption");
    caption.textContent = title;
    const plot = document.createElementNS(NS, "svg");
    plot.setAttribute("viewBox", "0 0 480 250");
    plot.setAttribute("role", "img");
    plot.setAttribute("aria-labelledby", `${id}-t ${id}-d`);
    const legend = document.createElement("ul");
    legend.className = "legend";
    legend.setAttribute("aria-label", `${title}: series`);
    fig.append(caption, plot, legend);
    return fig;
  }

  function legendItem(name, {stroke, dash}) {
    const item = document.createElement("li");
    const swatch = document.createElementNS(NS, "svg");
    swatch.setAttribute("viewBox", "0 0 22 10");
    swatch.setAttribute("aria-hidden", "true");
    const mark = document.createElementNS(NS, "line");
    for (const [k, v] of Object.entries({x1: 1, x2: 21, y1: 5, y2: 5, stroke, "stroke-width": 2.5})) mark.setAttribute(k, v);
    if (dash) mark.setAttribute("stroke-dasharray", dash);
    swatch.append(mark);
    item.append(swatch, document.createTextNode(name));
    return item;
  }

  return {figure, legendItem};
})();
