/* The datasets page: the user's datasets with their description, an upload (the file as
   one POST body, its CSRF token in a header) and a delete button per dataset. */
"use strict";

(() => {
  const main = document.getElementById("main");
  const maxBytes = Number(main.dataset.maxUploadMib) * 1024 * 1024;
  const $ = (id) => document.getElementById(id);
  const {el, num, fill} = TS;

  function columns(d) {
    const s = d.schema || {};
    if (d.format === "npz") {
      return ["x", "y"].filter((k) => s[k]).map((k) => `${k} [${(s[k].shape || []).join(", ")}] ${s[k].dtype || ""}`).join("; ") || d.columns.join(", ");
    }
    const shown = d.columns.slice(0, 8).join(", ");
    return d.columns.length > 8 ? `${shown}, … (${d.columns.length})` : shown;
  }

  function classes(names) {
    const list = names || [];
    return list.slice(0, 20).join(", ") + (list.length > 20 ? `, … (${list.length})` : "");
  }

  function describe(d) {
    const s = d.schema || {};
    const rows = (s.columns || []).map((c) => el("tr", {},
      el("th", {scope: "row", class: "mono"}, c.name), el("td", {}, c.numeric ? "number" : "text"),
      el("td", {class: "num"}, c.distinct_values ?? ""), el("td", {class: "wrap"}, classes(c.classes)),
      el("td", {class: "wrap"}, c.numeric && c.bad_row ? `row ${c.bad_row}: ${c.bad_value}` : "")));
    const arrays = ["x", "y"].filter((k) => s[k]).map((k) => el("tr", {},
      el("th", {scope: "row", class: "mono"}, k), el("td", {}, `${s[k].dtype} [${(s[k].shape || []).join(", ")}]`),
      el("td", {class: "num"}, s[k].distinct_values ?? ""), el("td", {class: "wrap"}, classes(s[k].classes)), el("td")));
    return el("section", {"aria-labelledby": "detail-h", class: "card detail", dataset: {dataset: d.name}},
      el("h3", {id: "detail-h", tabindex: -1}, `${d.name}: ${num(d.num_rows)} rows, ${d.format.toUpperCase()}, ${TS.bytes(d.size_bytes)}`),
      d.description ? el("p", {}, d.description) : "",
      el("p", {class: "hint mono wrap"}, `sha256 ${d.sha256}`),
      el("div", {class: "table-wrap"}, el("table", {class: "data"}, el("caption", {class: "sr-only"}, `Columns of ${d.name}`),
        el("thead", {}, el("tr", {}, ["Column / array", "Type", "Distinct values", "Classes", "First non-finite value"].map((h) => el("th", {scope: "col"}, h)))),
        el("tbody", {}, rows, arrays))));
  }

  function row(d) {
    const show = el("button", {type: "button", class: "link", "aria-label": `Describe ${d.name}`}, "Describe");
    show.addEventListener("click", () => { fill($("dataset-detail"), describe(d)); $("dataset-detail").querySelector("h3").focus(); });
    const del = TS.postForm(`/datasets/${encodeURIComponent(d.name)}/delete`, {class: "inline delete-form"},
      el("button", {type: "submit", class: "danger", "aria-label": `Delete ${d.name}`}, "Delete"));
    del.addEventListener("submit", (e) => { if (!confirm(`Delete dataset ${d.name}?`)) e.preventDefault(); });
    return el("tr", {dataset: {dataset: d.name}},
      el("th", {scope: "row", class: "mono"}, d.name), el("td", {}, d.format), el("td", {class: "num"}, d.num_rows),
      el("td", {class: "wrap"}, columns(d)), el("td", {class: "num"}, TS.bytes(d.size_bytes)),
      el("td", {class: "mono", title: d.sha256}, d.sha256.slice(0, 12) + "…"), el("td", {}, d.user || "–"),
      el("td", {}, TS.timeCell(d.created)), el("td", {}, show, " ", del));
  }

  async function load(focusName) {
    try {
      const {datasets} = await TS.getJSON("/api/datasets");
      fill(document.querySelector("#datasets tbody"), datasets.map(row));
      $("datasets-empty").hidden = datasets.length > 0;
      TS.status($("datasets-status"), `${datasets.length} dataset${datasets.length === 1 ? "" : "s"}`);
      const shown = datasets.find((d) => d.name === focusName);
      if (shown) fill($("dataset-detail"), describe(shown));
      document.body.dataset.rendered = "datasets";
    } catch (err) {
      TS.status($("datasets-status"), `Could not load the datasets: ${err.message}`, true);
    }
  }

  $("up-file").addEventListener("change", () => {
    const file = $("up-file").files[0];
    if (file && !$("up-name").value) $("up-name").value = file.name.replace(/\.[^.]*$/, "").toLowerCase().replace(/[^a-z0-9._-]/g, "-").slice(0, 63);
  });

  $("upload-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $("up-file").files[0];
    const statusLine = $("up-status");
    if (!file) return;
    const fmt = file.name.toLowerCase().endsWith(".npz") ? "npz" : "csv";
    if (file.size > maxBytes) { TS.status(statusLine, `Refused: the file is larger than ${main.dataset.maxUploadMib} MiB.`, true); return; }
    const params = new URLSearchParams({name: $("up-name").value.trim(), format: fmt, description: $("up-description").value});
    TS.status(statusLine, `Uploading ${file.name} (${TS.bytes(file.size)})…`);
    try {
      const d = await TS.post(`/api/datasets/upload?${params}`, file);
      TS.status(statusLine, `Uploaded ${d.name}: ${d.num_rows} rows.`);
      $("upload-form").reset();
      await load(d.name);
    } catch (err) {
      TS.status(statusLine, `Refused: ${err.message}`, true);
    }
  });

  load();
})();
