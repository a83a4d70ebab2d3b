/* The compare page: CompareJobs' answer (final and best metrics, the spec fields that
   differ) and every job's curves, one chart per metric with all jobs on the same axes. */
"use strict";

(() => {
  const main = document.getElementById("main");
  const ids = (main.dataset.ids || "").split(",").filter(Boolean);
  const $ = (id) => document.getElementById(id);
  const {el, num, fill} = TS;

  function jobName(job) {
    return job.name ? `${job.id} (${job.name})` : job.id;
  }

  function jobsTable(jobs) {
    const table = $("cmp-jobs");
    fill(table.querySelector("thead"), el("tr", {},
      ["Line", "Job", "Name", "State", "Epochs"].map((h) => el("th", {scope: "col"}, h))));
    fill(table.querySelector("tbody"), jobs.map((job, i) => el("tr", {},
      el("td", {}, swatch(i)),
      el("td", {}, el("a", {href: job.link || `/jobs/${encodeURIComponent(job.id)}`, class: "mono"}, job.id)),
      el("td", {}, job.name), el("td", {}, TS.stateBadge(job.state)), el("td", {class: "num"}, job.epochs))));
  }

  function swatch(i) {
    const item = TSChartDom.legendItem("", TSChart.style(i));
    item.firstChild.setAttribute("aria-hidden", "true");
    return el("span", {class: "legend"}, item.firstChild);
  }

  /** The best of the jobs' best values of `metric` in its direction, when two or more jobs
      have one (as `trainserve compare` marks it); undefined otherwise. */
  function topValue(jobs, metric) {
    const bests = jobs.map((j) => j.best[metric]).filter(Boolean);
    if (bests.length < 2) return undefined;
    const values = bests.map((b) => b.value);
    return bests[0].mode === "max" ? Math.max(...values) : Math.min(...values);
  }

  function metricsTable(jobs) {
    const table = $("cmp-metrics");
    const names = [...new Set(jobs.flatMap((j) => [...Object.keys(j.final), ...Object.keys(j.best)]))].sort();
    fill(table.querySelector("thead"),
      el("tr", {}, el("th", {scope: "col", rowspan: 2}, "Metric"),
        jobs.map((j) => el("th", {scope: "colgroup", colspan: 2, class: "mono"}, j.id))),
      el("tr", {}, jobs.map(() => [el("th", {scope: "col", class: "num"}, "final"),
                                   el("th", {scope: "col", class: "num"}, "best (epoch)")])));
    fill(table.querySelector("tbody"), names.map((name) => {
      const top = topValue(jobs, name);
      return el("tr", {}, el("th", {scope: "row"}, name), jobs.map((job) => {
        const best = job.best[name];
        const isTop = best !== undefined && best.value === top;
        return [el("td", {class: "num"}, name in job.final ? num(job.final[name]) : ""),
          el("td", {class: isTop ? "num best" : "num"}, best ? `${isTop ? "★ " : ""}${num(best.value)} (${best.epoch})` : "",
            isTop ? el("span", {class: "sr-only"}, " best of the jobs") : "")];
      }));
    }));
  }

  function diffTable(jobs, differences) {
    const table = $("cmp-diff");
    $("cmp-diff-empty").hidden = differences.length > 0;
    table.hidden = differences.length === 0;
    fill(table.querySelector("thead"), el("tr", {}, el("th", {scope: "col"}, "Field"),
      jobs.map((j) => el("th", {scope: "col", class: "mono"}, j.id))));
    fill(table.querySelector("tbody"), differences.map((d) => el("tr", {dataset: {path: d.path}},
      el("th", {scope: "row", class: "mono"}, d.path),
      d.values.map((v, i) => {
        const changed = i > 0 && v !== d.values[0];
        const text = v === "" ? el("span", {class: "unset"}, "(unset)") : v;
        return el("td", {class: changed ? "mono wrap diff" : "mono wrap"},
          changed ? el("mark", {}, text) : text,
          changed ? el("span", {class: "sr-only"}, " (differs)") : "");
      }))));
  }

  function curveCharts(jobs) {
    const box = $("cmp-curves");
    box.replaceChildren();
    const metrics = [...new Set(jobs.flatMap((j) => Object.keys(j.curves)))].sort();
    for (const metric of metrics) {
      const chart = TSChart.line(box, metric, "epoch");
      chart.update(jobs.map((job) => ({name: jobName(job), points: job.curves[metric] || []})));
    }
    if (!metrics.length) box.append(el("p", {class: "empty"}, "No curves: none of these jobs reported an epoch."));
  }

  async function load() {
    if (ids.length < 2) return;
    const status = $("compare-status");
    TS.status(status, "Loading…");
    try {
      const answer = await TS.getJSON(`/api/compare?ids=${encodeURIComponent(ids.join(","))}`);
      jobsTable(answer.jobs);
      metricsTable(answer.jobs);
      diffTable(answer.jobs, answer.differences);
      curveCharts(answer.jobs);
      TS.status(status, `${answer.jobs.length} jobs, ${answer.differences.length} spec field${answer.differences.length === 1 ? "" : "s"} differ`);
      document.body.dataset.rendered = "compare";
    } catch (err) {
      TS.status(status, `Could not compare: ${err.message}`, true);
      $("comparison").hidden = true;
    }
  }

  load();
})();
