/* The searches list: the user's search jobs, refreshed every POLL_MS while the tab shows. */
"use strict";

(() => {
  const POLL_MS = 3000;
  const body = document.querySelector("#searches tbody");
  const statusLine = document.getElementById("searches-status");
  const {el, num} = TS;

  function row(s) {
    const latest = s.metric && s.metric.name === s.rank_metric ? s.metric.value : undefined;
    return el("tr", {dataset: {id: s.id}},
      el("td", {}, el("a", {href: `/searches/${encodeURIComponent(s.id)}`, class: "mono"}, s.id)),
      el("td", {}, s.name), el("td", {}, TS.stateBadge(s.state)),
      el("td", {class: "mono"}, `${s.rank_metric} (${s.mode})`), el("td", {}, s.algorithm),
      el("td", {}, s.scheduler), el("td", {class: "num"}, num(latest)),
      el("td", {}, s.user || "–"), el("td", {}, TS.timeCell(s.created)));
  }

  async function refresh() {
    try {
      const {searches} = await TS.getJSON("/api/searches");
      TS.fill(body, searches.map(row));
      document.getElementById("searches-empty").hidden = searches.length > 0;
      TS.status(statusLine, `${searches.length} search${searches.length === 1 ? "" : "es"} · updated ${new Date().toLocaleTimeString()}`);
      document.body.dataset.rendered = "searches";
    } catch (err) {
      TS.status(statusLine, `Could not load the searches: ${err.message}`, true);
    }
    setTimeout(() => (document.hidden ? setTimeout(refresh, POLL_MS) : refresh()), POLL_MS);
  }

  refresh();
})();
