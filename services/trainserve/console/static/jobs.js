/* The jobs list: fetched from /api/jobs every POLL_MS while the tab is visible, rows
   updated in place (a focused checkbox or link keeps its focus), sorted by the column the
   user picked, ticked rows sent to the compare page. */
"use strict";

(() => {
  const POLL_MS = 1500;
  const table = document.getElementById("jobs");
  const body = table.querySelector("tbody");
  const statusLine = document.getElementById("jobs-status");
  const filters = document.getElementById("filters");
  const compareButton = document.getElementById("compare-button");
  const selectedCount = document.getElementById("selected-count");
  const empty = document.getElementById("jobs-empty");
  const rows = new Map();        // job id -> {row, key, job}
  const selected = new Set();
  let sort = {key: "created", dir: -1};
  let jobs = [];
  let timer = null;
  let firstRender = true;

  const SORT_VALUES = {
    id: (j) => j.id, name: (j) => j.name, state: (j) => j.state, user: (j) => j.user,
    created: (j) => j.created || "",
    progress: (j) => (j.total_epochs ? j.epoch / j.total_epochs : 0),
    metric: (j) => (j.metric ? j.metric.value : -Infinity),
  };

  function query() {
    const params = new URLSearchParams();
    const state = filters.elements.state.value, label = filters.elements.label.value.trim();
    if (state) params.set("state", state);
    if (label) params.set("label", label);
    return params.toString();
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const answer = await TS.getJSON("/api/jobs?" + query());
      jobs = answer.jobs;
      render();
      const more = answer.more ? " (the newest; narrow the filter to see older ones)" : "";
      TS.status(statusLine, `${jobs.length} job${jobs.length === 1 ? "" : "s"}${more} · updated ${new Date().toLocaleTimeString()}`);
    } catch (err) {
      TS.status(statusLine, `Could not load the jobs: ${err.message}`, true);
    }
    timer = setTimeout(tick, POLL_MS);
  }

  function tick() {
    if (document.hidden) { timer = setTimeout(tick, POLL_MS); return; }
    refresh();
  }

  function render() {
    const value = SORT_VALUES[sort.key];
    const ordered = [...jobs].sort((a, b) => {
      const va = value(a), vb = value(b);
      return (va < vb ? -1 : va > vb ? 1 : 0) * sort.dir || (a.id < b.id ? 1 : -1);
    });
    const seen = new Set();
    for (const job of ordered) {
      seen.add(job.id);
      const key = JSON.stringify(job);
      const known = rows.get(job.id);
      if (!known) rows.set(job.id, {row: makeRow(job), key, job});
      else if (known.key !== key) { updateRow(known.row, job); known.key = key; known.job = job; }
    }
    for (const [id, {row}] of rows) if (!seen.has(id)) { row.remove(); rows.delete(id); selected.delete(id); }
    const wanted = ordered.map((j) => rows.get(j.id).row);
    if (wanted.some((row, i) => body.children[i] !== row)) body.append(...wanted);
    empty.hidden = ordered.length > 0;
    updateSelection();
    if (firstRender) { firstRender = false; performance.mark("ts-jobs-rendered"); document.body.dataset.rendered = "jobs"; }
  }

  function makeRow(job) {
    const box = TS.el("input", {type: "checkbox", name: "ids", value: job.id, "aria-label": `Select job ${job.id} to compare`});
    box.checked = selected.has(job.id);
    const row = TS.el("tr", {dataset: {id: job.id}}, TS.el("td", {}, box));
    for (let i = 0; i < 8; i++) row.append(TS.el("td"));
    updateRow(row, job);
    return row;
  }

  function updateRow(row, job) {
    const cells = row.children;
    TS.fill(cells[1], TS.el("a", {href: `/jobs/${encodeURIComponent(job.id)}`, class: "mono"}, job.id));
    cells[2].textContent = job.name;
    TS.fill(cells[3], TS.stateBadge(job.state));
    TS.fill(cells[4], progressCell(job));
    cells[5].textContent = job.metric ? `${job.metric.name} ${TS.num(job.metric.value)}` : "–";
    cells[6].textContent = job.user || "–";
    TS.fill(cells[7], TS.labelChips(job.labels));
    TS.fill(cells[8], TS.timeCell(job.created));
    row.title = job.message || job.queue_reason || "";
  }

  function progressCell(job) {
    if (!job.total_epochs) return job.search ? "search" : "–";
    const text = `${job.epoch}/${job.total_epochs}`;
    return TS.el("span", {class: "progress-cell"},
      TS.el("progress", {max: job.total_epochs, value: job.epoch, "aria-label": `epoch ${text}`}), text);
  }

  function updateSelection() {
    for (const {row} of rows.values()) row.classList.toggle("selected", selected.has(row.dataset.id));
    compareButton.disabled = selected.size < 2 || selected.size > 20;
    selectedCount.textContent = selected.size
      ? `${selected.size} selected${selected.size > 20 ? " (at most 20)" : ""}`
      : "Select two or more jobs to compare them.";
  }

  body.addEventListener("change", (event) => {
    const box = event.target;
    if (box.name !== "ids") return;
    box.checked ? selected.add(box.value) : selected.delete(box.value);
    updateSelection();
  });

  table.querySelector("thead").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-sort]");
    if (!button) return;
    const key = button.dataset.sort;
    sort = {key, dir: sort.key === key ? -sort.dir : (key === "created" ? -1 : 1)};
    for (const th of table.querySelectorAll("thead th[aria-sort]")) th.setAttribute("aria-sort", "none");
    button.closest("th").setAttribute("aria-sort", sort.dir > 0 ? "ascending" : "descending");
    render();
  });

  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = query();
    history.replaceState(null, "", q ? `/jobs?${q}` : "/jobs");
    refresh();
  });
  filters.elements.state.addEventListener("change", () => filters.requestSubmit());
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });

  refresh();
})();
