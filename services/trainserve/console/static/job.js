/* A job's page: its summary, its curves (history from /curves, then each epoch as it
   arrives on the live event stream), its metrics, plots, logs and spec. */
"use strict";

(() => {
  const main = document.getElementById("main");
  const jobId = main.dataset.jobId;
  const base = `/api/jobs/${encodeURIComponent(jobId)}`;
  const MAX_LOG_LINES = 2000;
  const $ = (id) => document.getElementById(id);
  // curves: metric -> series name -> Map(epoch -> value); a search's series are its trials.
  const curves = new Map();
  const charts = new Map();   // chart title -> {update, metrics}
  const logLines = [];
  const ranks = new Set();
  let lastEpoch = 0, lastLog = "", ended = false, source = null, plotsLoaded = false;
  window.tsEpochsDrawn = [];  // [{epoch, at}] for the browser tests' latency measurement

  function addPoint(metric, series, epoch, value) {
    if (!curves.has(metric)) curves.set(metric, new Map());
    const bySeries = curves.get(metric);
    if (!bySeries.has(series)) bySeries.set(series, new Map());
    bySeries.get(series).set(epoch, value);
  }

  /** Charts group a metric's train_ and val_ curves: "loss" shows train_loss and val_loss;
      and one statistic's per-layer curves ("grad_norm/01_fc1", ...): one chart per statistic. */
  function chartOf(metric) {
    return metric.replace(/^(train|val)_/, "").split("/")[0];
  }

  function drawCharts() {
    const box = $("curves");
    const groups = new Map();
    for (const metric of [...curves.keys()].sort()) {
      const title = chartOf(metric);
      if (!groups.has(title)) groups.set(title, []);
      for (const [series, points] of curves.get(metric)) {
        const name = series ? `${series} ${metric}` : metric;
        groups.get(title).push({name, points: [...points.entries()].sort((a, b) => a[0] - b[0])});
      }
    }
    for (const [title, series] of groups) {
      if (!charts.has(title)) charts.set(title, TSChart.line(box, title, "epoch"));
      charts.get(title).update(series);
    }
    $("curves-empty").hidden = groups.size > 0;
  }

  async function loadCurves() {
    const data = await TS.getJSON(`${base}/curves`);
    for (const [metric, points] of Object.entries(data.metrics)) {
      for (const [epoch, value] of points) { addPoint(metric, "", epoch, value); lastEpoch = Math.max(lastEpoch, epoch); }
    }
    for (const [trial, metrics] of Object.entries(data.trials)) {
      for (const [metric, points] of Object.entries(metrics)) {
        for (const [epoch, value] of points) addPoint(metric, trial, epoch, value);
      }
    }
    drawCharts();
  }

  async function loadJob() {
    const job = await TS.getJSON(base);
    showState(job.state, job.terminal, job.message || job.queue_reason);
    summary(job);
    metricsTable(job.metrics);
    $("spec").textContent = job.spec;
    if (job.terminal && !plotsLoaded) loadPlots();
    return job;
  }

  // A replayed history says queued, then running, then how it ended: never step back.
  const ORDER = {queued: 0, running: 1, succeeded: 2, failed: 2, cancelled: 2};
  let shownState = null;

  function showState(state, terminal, message) {
    shownState = state;
    const badge = $("job-state");
    badge.className = `state state-${state}`;
    badge.textContent = state;
    $("cancel-form").hidden = terminal;
    $("delete-form").hidden = !terminal;
    if (message !== undefined) $("job-message").textContent = message || "";
  }

  function summary(job) {
    const items = [["Owner", job.user || "–"], ["Epoch", TS.el("span", {id: "summary-epoch"})],
      ["Created", job.created ? new Date(job.created).toLocaleString() : "–"],
      ["Started", job.started ? new Date(job.started).toLocaleString() : "–"],
      ["Finished", job.finished ? new Date(job.finished).toLocaleString() : "–"],
      ["Model", job.model_name ? `${job.model_name} v${job.model_version}` : "–"],
      ["Labels", Object.keys(job.labels).length ? TS.labelChips(job.labels) : "–"]];
    if (job.search) items.push(["Trials", `${job.trials.length}${job.best_trial ? `, best ${job.best_trial}` : ""}`]);
    TS.fill($("summary"), items.map(([k, v]) => TS.el("div", {}, TS.el("dt", {}, k), TS.el("dd", {}, v))));
    progress(job.epoch, job.total_epochs);
  }

  function progress(epoch, total) {
    $("summary-epoch").textContent = total ? `${epoch} of ${total}` : "–";
    const bar = $("job-progress");
    bar.max = total || 1;
    bar.value = Math.min(epoch, total || 1);
    bar.setAttribute("aria-valuetext", total ? `epoch ${epoch} of ${total}` : "not started");
  }

  function metricsTable(metrics) {
    const names = Object.keys(metrics).sort();
    TS.fill($("metrics").querySelector("tbody"), names.length
      ? names.map((n) => TS.el("tr", {}, TS.el("th", {scope: "row"}, n), TS.el("td", {class: "num"}, TS.num(metrics[n]))))
      : TS.el("tr", {}, TS.el("td", {colspan: 2, class: "empty"}, "none yet")));
  }

  async function loadPlots() {
    plotsLoaded = true;
    const status = $("plots-status");
    TS.status(status, "Rendering the plots…");
    try {
      const {artifacts} = await TS.getJSON(`${base}/artifacts`);
      const images = artifacts.filter((a) => a.content_type === "image/png");
      const files = artifacts.filter((a) => a.content_type !== "image/png");
      TS.fill($("plots"), images.map((a) => TS.el("figure", {},
        TS.el("img", {src: a.url, alt: `${a.name.replace(/\.png$/, "").replace(/_/g, " ")} plot of job ${jobId}`}),
        TS.el("figcaption", {}, TS.el("a", {href: a.url}, a.name)))));
      status.replaceChildren(...(files.length ? ["Files: ", ...files.flatMap((a, i) => [i ? ", " : "", TS.el("a", {href: a.url}, a.name)])] : [images.length ? "" : "No plots for this job."]));
    } catch (err) {
      plotsLoaded = false;
      TS.status(status, `Could not load the plots: ${err.message}`, true);
    }
  }

  function appendLog(line) {
    lastLog = line.id;
    logLines.push(line);
    if (logLines.length > MAX_LOG_LINES) logLines.splice(0, logLines.length - MAX_LOG_LINES);
    if (!ranks.has(line.rank)) {
      ranks.add(line.rank);
      $("log-rank").append(TS.el("option", {value: line.rank}, `rank ${line.rank}`));
    }
  }

  let logsPending = false;
  function drawLogs() {   // at most once a frame, however many lines arrive
    if (logsPending) return;
    logsPending = true;
    requestAnimationFrame(() => {
      logsPending = false;
      const box = $("logs"), rank = $("log-rank").value;
      const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
      const shown = logLines.filter((l) => rank === "" || String(l.rank) === rank);
      TS.fill(box, shown.map((l) => TS.el("span", {class: l.level === "warning" || l.level === "error" ? l.level : null},
        TS.el("span", {class: "rank"}, `[${l.rank}] `), l.text.endsWith("\n") ? l.text : l.text + "\n")));
      $("log-count").textContent = `${shown.length} line${shown.length === 1 ? "" : "s"}`;
      if (atBottom) box.scrollTop = box.scrollHeight;
    });
  }

  function onEpoch(data) {
    for (const [metric, value] of Object.entries(data.metrics)) addPoint(metric, "", data.epoch, value);
    lastEpoch = Math.max(lastEpoch, data.epoch);
    drawCharts();
    metricsTable(data.metrics);
    progress(data.epoch, data.total_epochs);
    window.tsEpochsDrawn.push({epoch: data.epoch, at: Date.now()});
  }

  function onTrial(data) {
    if (!data.epochs) return;
    for (const [metric, value] of Object.entries(data.metrics)) {
      if (!metric.startsWith("test_")) addPoint(metric, data.id, data.epochs, value);
    }
    drawCharts();
  }

  function connect() {
    if (ended) return;
    const url = `${base}/live?since_epoch=${lastEpoch}&after_log=${encodeURIComponent(lastLog)}`;
    source = new EventSource(url);
    source.addEventListener("epoch", (e) => onEpoch(JSON.parse(e.data)));
    source.addEventListener("trial", (e) => onTrial(JSON.parse(e.data)));
    source.addEventListener("state", (e) => {
      const data = JSON.parse(e.data);
      if ((ORDER[data.state] ?? 0) < (ORDER[shownState] ?? 0)) return;
      showState(data.state, data.terminal, data.message);
      loadJob();  // its times, its model once it has one
    });
    source.addEventListener("log", (e) => { appendLog(JSON.parse(e.data)); drawLogs(); });
    source.addEventListener("problem", (e) => {
      TS.status($("job-message"), `Live updates: ${JSON.parse(e.data).message}`, true);
    });
    source.addEventListener("end", () => { ended = true; source.close(); loadJob(); });
    source.onerror = () => {   // a dropped stream: reconnect, resuming where it stopped
      source.close();
      if (!ended) setTimeout(connect, 2000);
    };
  }

  $("log-rank").addEventListener("change", drawLogs);

  (async () => {
    try {
      await loadJob();
      await loadCurves();
    } catch (err) {
      TS.status($("job-message"), err.message, true);
    }
    connect();
  })();

  $("delete-form").addEventListener("submit", (e) => {
    if (!confirm(`Delete job ${jobId} with its curves, logs and files?`)) e.preventDefault();
  });
})();
