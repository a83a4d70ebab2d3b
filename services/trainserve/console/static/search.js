/* A search's page: its trials as a sortable table (hyperparameters, the ranking metric,
   state; the best marked), a parallel-coordinates view of the hyperparameters against the
   metric, and the curves of the best or of the ticked trials. Polled every POLL_MS while
   the search runs; once it ended, read once more and left. */
"use strict";

/* Parallel coordinates in SVG: an axis per hyperparameter (numbers on a linear scale, a log
   scale for a loguniform distribution; anything else as evenly spaced categories) and one
   for the metric; each trial a polyline. */
const TSParallel = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const H = 300, M = {top: 34, bottom: 24, left: 100, right: 100};

  function node(tag, attrs, text) {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function scaleOf(values, logScale) {
    const present = values.filter((v) => v !== undefined);
    const numeric = present.length && present.every((v) => typeof v === "number");
    if (!numeric) {
      const cats = [...new Set(present.map(String))].sort();
      return {ticks: cats, at: (v) => (cats.length < 2 ? 0.5 : cats.indexOf(String(v)) / (cats.length - 1))};
    }
    let lo = Math.min(...present), hi = Math.max(...present);
    const log = Boolean(logScale) && lo > 0;
    const f = log ? Math.log10 : (x) => x;
    if (hi === lo) { return {ticks: [lo], at: () => 0.5}; }
    return {ticks: [lo, hi], at: (v) => (f(v) - f(lo)) / (f(hi) - f(lo)), log};
  }

  function label(v) { return typeof v === "number" ? TS.num(v) : String(v); }

  function draw(figure, search, paths, value, metricOf) {
    const axes = [...paths.map((p) => ({name: p, log: /^\s*loguniform/.test(search.space[p]),
                                        get: (t) => (p in t.config ? value(t.config[p]) : undefined)})),
                  {name: search.metric, get: metricOf, metric: true}];
    const W = Math.max(720, 220 * axes.length);
    const x = (i) => M.left + (axes.length < 2 ? 0 : i * (W - M.left - M.right) / (axes.length - 1));
    const y = (f) => H - M.bottom - f * (H - M.top - M.bottom);
    const trials = search.trials;
    const nodes = [node("title", {id: "pc-t"}, `Parallel coordinates of ${trials.length} trials`),
                   node("desc", {id: "pc-d"}, describe(search, metricOf))];
    const scales = axes.map((a) => scaleOf(trials.map(a.get), a.log));
    const last = axes.length - 1;
    axes.forEach((a, i) => {
      nodes.push(node("line", {class: "axis", x1: x(i), x2: x(i), y1: M.top, y2: H - M.bottom}));
      nodes.push(node("text", {class: "tick axis-name", x: x(i), y: M.top - 14, "text-anchor": "middle"}, a.name + (scales[i].log ? " (log)" : "")));
      for (const t of scales[i].ticks.slice(0, 12)) {
        nodes.push(node("text", {class: "tick", x: i === last ? x(i) - 5 : x(i) + 5, y: y(scales[i].at(t)) + 4,
                                 "text-anchor": i === last ? "end" : "start"}, label(t)));
      }
    });
    const ordered = [...trials].sort((a, b) => (a.id === search.best_trial) - (b.id === search.best_trial));
    for (const t of ordered) {
      const pts = axes.map((a, i) => { const v = a.get(t); return v === undefined ? null : `${x(i).toFixed(1)},${y(scales[i].at(v)).toFixed(1)}`; });
      if (pts.some((p) => p === null)) continue;
      const cls = t.id === search.best_trial ? "pc-line pc-best" : (t.state === "stopped_early" || t.state === "failed" ? "pc-line pc-stopped" : "pc-line");
      const line = node("polyline", {class: cls, points: pts.join(" "), "data-trial": t.id});
      line.append(node("title", {}, `${t.id} (${t.state}): ${search.metric} ${TS.num(metricOf(t))}`));
      nodes.push(line);
    }
    let svg = figure.querySelector("svg");
    if (!svg) {
      svg = node("svg", {role: "img", "aria-labelledby": "pc-t pc-d"});
      figure.replaceChildren(svg, TS.el("figcaption", {class: "hint"}, "Hover a line for its trial; the table above has every value."));
    }
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.replaceChildren(...nodes);
  }

  function describe(search, metricOf) {
    const done = search.trials.filter((t) => metricOf(t) !== undefined);
    if (!done.length) return "no trial has a value yet";
    const best = search.trials.find((t) => t.id === search.best_trial);
    return `${done.length} trials with a value` + (best ? `; best ${best.id}: ${search.metric} ${TS.num(metricOf(best))}` : "");
  }

  return {draw};
})();

(() => {
  const POLL_MS = 1500;
  const main = document.getElementById("main");
  const jobId = main.dataset.jobId;
  const $ = (id) => document.getElementById(id);
  const {el, num, fill} = TS;
  const selected = new Set();
  let search = null, curves = null, sort = {key: "id", dir: 1}, showSelected = false;
  window.tsSearchPolls = 0;

  /** A sampled value as the API gives it (JSON text) -> number or string. */
  function value(text) {
    try { const v = JSON.parse(text); return typeof v === "number" || typeof v === "string" ? v : JSON.stringify(v); }
    catch { return text; }
  }

  function paths() { return Object.keys(search.space); }

  function metricOf(trial) {
    const v = trial.metrics[search.metric];
    return Number.isFinite(v) ? v : undefined;
  }

  /** A sampled value for the table: numbers in 4 significant digits (the cell's title has all). */
  function shown(v) {
    return typeof v === "number" ? num(v) : String(v);
  }

  function sortValue(trial, key) {
    if (key === "id") return trial.id;
    if (key === "state") return trial.state;
    if (key === "epochs") return trial.epochs;
    if (key === "metric") { const v = metricOf(trial); return v === undefined ? -Infinity : v; }
    return value(trial.config[key] ?? "");
  }

  function sortedTrials() {
    return [...search.trials].sort((a, b) => {
      const va = sortValue(a, sort.key), vb = sortValue(b, sort.key);
      return (va < vb ? -1 : va > vb ? 1 : 0) * sort.dir || (a.id < b.id ? -1 : 1);
    });
  }

  function header() {
    const th = (key, text, cls) => el("th", {scope: "col", class: cls, "aria-sort": sort.key === key ? (sort.dir > 0 ? "ascending" : "descending") : "none"},
      el("button", {type: "button", dataset: {sort: key}}, text));
    return el("tr", {}, el("th", {scope: "col"}, el("span", {class: "sr-only"}, "Select")),
      th("id", "Trial"), th("state", "State"), th("epochs", "Epochs", "num"),
      paths().map((p) => th(p, p, "mono")), th("metric", search.metric, "num mono"));
  }

  function trialRow(trial) {
    const best = trial.id === search.best_trial;
    const box = el("input", {type: "checkbox", value: trial.id, "aria-label": `Select trial ${trial.id}`});
    box.checked = selected.has(trial.id);
    return el("tr", {dataset: {trial: trial.id}, class: best ? "best-row" : null},
      el("td", {}, box),
      el("th", {scope: "row", class: "mono"}, best ? "★ " : "", trial.id, best ? el("span", {class: "sr-only"}, " (best trial)") : ""),
      el("td", {}, el("span", {class: `state state-${trial.state}`, title: trial.message || null}, trial.state.replace("_", " "))),
      el("td", {class: "num"}, trial.epochs),
      paths().map((p) => el("td", {class: "mono", title: trial.config[p]}, p in trial.config ? shown(value(trial.config[p])) : "–")),
      el("td", {class: best ? "num best" : "num"}, num(metricOf(trial))));
  }

  function drawTable() {
    const table = $("trials");
    fill(table.querySelector("thead"), header());
    const focused = document.activeElement && document.activeElement.closest("#trials tbody") ? document.activeElement.value : null;
    fill(table.querySelector("tbody"), sortedTrials().map(trialRow));
    if (focused) { const box = table.querySelector(`tbody input[value="${CSS.escape(focused)}"]`); if (box) box.focus(); }
    $("trials-empty").hidden = search.trials.length > 0;
    table.dataset.trials = String(search.trials.length);
  }

  function summary() {
    const counts = {};
    for (const t of search.trials) counts[t.state] = (counts[t.state] || 0) + 1;
    const items = [["Owner", search.user || "–"], ["Algorithm", search.algorithm], ["Scheduler", search.scheduler],
      ["Ranks by", `${search.metric} (${search.mode})`],
      ["Trials", Object.entries(counts).map(([s, n]) => `${n} ${s.replace("_", " ")}`).join(", ") || "none yet"],
      ["Best trial", search.best_trial || "–"],
      ["Space", el("ul", {class: "plain"}, Object.entries(search.space).map(([p, d]) => el("li", {}, el("span", {class: "mono"}, p), `: ${d}`)))]];
    fill($("search-summary"), items.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
    const badge = $("search-state");
    badge.className = `state state-${search.state}`;
    badge.textContent = search.state;
  }

  function drawCurves() {
    if (!curves) return;
    const ids = showSelected && selected.size ? [...selected] : (curves.best_trial ? [curves.best_trial] : Object.keys(curves.trials).slice(0, 1));
    const box = $("s-curves");
    box.replaceChildren();
    const metrics = [...new Set(ids.flatMap((id) => Object.keys(curves.trials[id] || {})))].sort();
    for (const metric of metrics) {
      TSChart.line(box, metric, "epoch").update(ids.map((id) => ({name: id === curves.best_trial ? `${id} ★` : id, points: (curves.trials[id] || {})[metric] || []})));
    }
    if (!metrics.length) box.append(el("p", {class: "empty"}, "No epoch reported yet."));
    $("s-curves-hint").textContent = showSelected && selected.size
      ? `Curves of ${selected.size} selected trial${selected.size === 1 ? "" : "s"}, on the same axes.`
      : "The best trial's curves; tick trials above and press “Curves of selected trials” to compare them on the same axes.";
  }

  function updateSelection() {
    $("show-selected").disabled = selected.size === 0;
    $("compare-selected").disabled = selected.size < 2 || selected.size > 20;
    $("trials-selected").textContent = selected.size ? `${selected.size} selected` : "Tick trials to draw their curves side by side, or two to twenty to compare them.";
  }

  async function load() {
    search = await TS.getJSON(`/api/searches/${encodeURIComponent(jobId)}`);
    window.tsSearchPolls += 1;
    summary();
    drawTable();
    TSParallel.draw($("parallel"), search, paths(), value, metricOf);
    curves = await TS.getJSON(`/api/jobs/${encodeURIComponent(jobId)}/curves`);
    drawCurves();
    TS.status($("search-status"), `${search.trials.length} trial${search.trials.length === 1 ? "" : "s"}${search.terminal ? "" : " · live"} · updated ${new Date().toLocaleTimeString()}`);
    document.body.dataset.rendered = "search";
  }

  async function poll() {
    try { await load(); } catch (err) { TS.status($("search-status"), `Could not load the search: ${err.message}`, true); }
    if (!search || !search.terminal) setTimeout(poll, POLL_MS);
  }

  $("trials").addEventListener("change", (event) => {
    const box = event.target;
    if (box.type !== "checkbox") return;
    box.checked ? selected.add(box.value) : selected.delete(box.value);
    updateSelection();
  });
  $("trials").querySelector("thead").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-sort]");
    if (!button) return;
    const key = button.dataset.sort;
    sort = {key, dir: sort.key === key ? -sort.dir : (key === "metric" && search.mode === "max" ? -1 : 1)};
    drawTable();
    $("trials").querySelector(`thead button[data-sort="${CSS.escape(key)}"]`).focus();
  });
  $("show-selected").addEventListener("click", () => { showSelected = true; drawCurves(); });
  // CompareJobs names a search's trial "SEARCH/TRIAL".
  $("compare-selected").addEventListener("click", () => {
    location.assign(`/compare?ids=${encodeURIComponent([...selected].map((t) => `${jobId}/${t}`).join(","))}`);
  });

  poll();
})();
