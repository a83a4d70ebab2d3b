/* The endpoints list: state, model version, traffic split; refreshed every POLL_MS. */
"use strict";

(() => {
  const POLL_MS = 3000;
  const body = document.querySelector("#endpoints tbody");
  const statusLine = document.getElementById("endpoints-status");
  const {el} = TS;

  function split(e) {
    return e.split.map((s) => `v${s.version} ${s.percent}%${s.role === "canary" && s.state !== "ready" ? ` (${s.state})` : ""}`).join(" · ");
  }

  function row(e) {
    return el("tr", {dataset: {endpoint: e.name}},
      el("td", {}, el("a", {href: `/endpoints/${encodeURIComponent(e.name)}`, class: "mono"}, e.name)),
      el("td", {}, el("span", {class: `state state-${e.state}`}, e.state)),
      el("td", {}, `${e.model_name} v${e.model_version}`), el("td", {}, split(e)),
      el("td", {}, e.user || "–"), el("td", {}, TS.timeCell(e.updated)));
  }

  async function refresh() {
    try {
      const {endpoints} = await TS.getJSON("/api/endpoints");
      TS.fill(body, endpoints.map(row));
      document.getElementById("endpoints-empty").hidden = endpoints.length > 0;
      TS.status(statusLine, `${endpoints.length} endpoint${endpoints.length === 1 ? "" : "s"} · updated ${new Date().toLocaleTimeString()}`);
      document.body.dataset.rendered = "endpoints";
    } catch (err) {
      TS.status(statusLine, `Could not load the endpoints: ${err.message}`, true);
    }
    setTimeout(refresh, POLL_MS);
  }

  refresh();
})();
