/* The models page: each model's versions (newest first) with metrics, lineage and aliases;
   per version a deploy form, an alias form (point an alias here), a remove button per alias
   and a delete button. */
"use strict";

(() => {
  const box = document.getElementById("models");
  const statusLine = document.getElementById("models-status");
  const {el, num} = TS;

  // The headline metrics, in this order; per-class ones (test_3_fp) only in the details.
  const HEADLINE = ["test_accuracy", "test_loss", "test_f1", "test_auc", "test_mae", "test_rmse", "test_r2", "test_recon_mse"];

  function metrics(m) {
    const names = Object.keys(m.metrics).sort();
    const headline = HEADLINE.filter((n) => n in m.metrics);
    const shown = headline.length ? headline : names.filter((n) => !/_\d+_/.test(n));
    return shown.slice(0, 4).map((n) => el("span", {class: "chip mono"}, `${n} ${num(m.metrics[n])}`));
  }

  function lineage(m) {
    const job = m.job_id ? el("a", {href: `/jobs/${encodeURIComponent(m.job_id)}`, class: "mono"}, m.job_id) : "–";
    return [job, m.trial_id ? [" trial ", el("span", {class: "mono"}, m.trial_id)] : ""];
  }

  function details(m) {
    // An optional output is sent only when a request names it (docs/interpretability.md).
    const io = (ts) => ts.map((t) => `${t.name} ${t.datatype} [${t.shape.join(", ")}]${t.optional ? " (optional: only when a request names it)" : ""}`).join("; ");
    const items = [["Task", m.task], ["Inputs", io(m.inputs)], ["Outputs", io(m.outputs)],
      ["Classes", m.class_names.join(", ") || "–"], ["Preprocessing", m.preprocessing],
      ["Dataset SHA-256", el("span", {class: "mono"}, m.dataset_hash || "–")],
      ["All metrics", Object.entries(m.metrics).sort().map(([k, v]) => `${k} ${num(v)}`).join(", ") || "–"]];
    if (Object.keys(m.search_config).length) items.push(["Trial's values", Object.entries(m.search_config).map(([k, v]) => `${k}=${v}`).join(", ")]);
    return el("details", {class: "model-details"}, el("summary", {}, `Signature, lineage and spec of ${m.name} v${m.version}`),
      el("dl", {class: "summary"}, items.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v)))),
      el("pre", {class: "spec", tabindex: 0, "aria-label": `Spec of ${m.name} v${m.version}`}, m.spec));
  }

  function deployForm(m) {
    const id = `deploy-${m.name}-${m.version}`;
    return TS.postForm(`/models/${encodeURIComponent(m.name)}/${m.version}/deploy`, {class: "deploy-form"},
      el("label", {for: id, class: "sr-only"}, `Endpoint name for ${m.name} v${m.version}`),
      el("input", {id, name: "endpoint", value: m.name, size: 14, spellcheck: "false", pattern: "[a-z0-9._\\-]{1,63}"}),
      el("button", {type: "submit"}, "Deploy"));
  }

  const path = (m, tail) => `/models/${encodeURIComponent(m.name)}/${tail}`;

  function aliasRemovers(m) {
    return (m.aliases || []).map((a) => TS.postForm(path(m, `aliases/${encodeURIComponent(a)}/delete`),
      {class: "manage-form alias", dataset: {alias: a}},
      el("button", {type: "submit", "aria-label": `Remove alias ${a} of ${m.name}`}, `Remove @${a}`)));
  }

  function manageForms(m) {
    const id = `alias-${m.name}-${m.version}`;
    const setAlias = TS.postForm(path(m, `${m.version}/alias`), {class: "manage-form alias-form"},
      el("label", {for: id, class: "sr-only"}, `Alias to point at ${m.name} v${m.version}`),
      el("input", {id, name: "alias", placeholder: "production", required: true, spellcheck: "false", pattern: "[a-z][a-z0-9_\-]{0,62}"}),
      el("button", {type: "submit"}, "Set alias"));
    const del = TS.postForm(path(m, `${m.version}/delete`), {class: "manage-form delete-form"},
      el("button", {type: "submit", class: "danger", "aria-label": `Delete ${m.name} v${m.version}`}, "Delete version"));
    del.addEventListener("submit", (e) => {
      if (!confirm(`Delete ${m.name} v${m.version} with its aliases, tags and files?`)) e.preventDefault();
    });
    return [setAlias, aliasRemovers(m), del];
  }

  function modelSection(name, versions) {
    const hid = `model-${name}`;
    return el("section", {"aria-labelledby": hid, class: "model", dataset: {model: name}},
      el("h2", {id: hid}, name, " ", el("span", {class: "muted"}, `${versions.length} version${versions.length === 1 ? "" : "s"}`)),
      el("div", {class: "table-wrap"}, el("table", {class: "data"},
        el("caption", {class: "sr-only"}, `Versions of ${name}`),
        el("thead", {}, el("tr", {}, ["Version", "Test metrics", "Job", "Dataset", "Seed", "Owner", "Registered", "Deploy at endpoint", "Aliases and deletion"].map((h) => el("th", {scope: "col"}, h)))),
        el("tbody", {}, versions.map((m) => [
          el("tr", {dataset: {version: m.version}}, el("th", {scope: "row"}, `v${m.version}`, (m.aliases || []).map((a) => [" ", el("span", {class: "badge mono alias-badge"}, `@${a}`)])), el("td", {class: "wrap"}, metrics(m)),
            el("td", {}, lineage(m)), el("td", {}, m.dataset || "–", m.dataset_hash ? el("span", {class: "muted mono", title: m.dataset_hash}, ` ${m.dataset_hash.slice(0, 10)}…`) : ""),
            el("td", {class: "num"}, m.seed), el("td", {}, m.user || "–"), el("td", {}, TS.timeCell(m.created)), el("td", {}, deployForm(m)), el("td", {class: "wrap"}, manageForms(m))),
          el("tr", {class: "detail-row"}, el("td", {colspan: 9, class: "wrap"}, details(m)))])))));
  }

  async function load() {
    try {
      const {models} = await TS.getJSON("/api/models");
      const byName = new Map();
      for (const m of models) { if (!byName.has(m.name)) byName.set(m.name, []); byName.get(m.name).push(m); }
      for (const versions of byName.values()) versions.sort((a, b) => b.version - a.version);
      box.replaceChildren(...[...byName].map(([name, versions]) => modelSection(name, versions)));
      document.getElementById("models-empty").hidden = models.length > 0;
      TS.status(statusLine, `${byName.size} model${byName.size === 1 ? "" : "s"}, ${models.length} version${models.length === 1 ? "" : "s"}`);
      document.body.dataset.rendered = "models";
    } catch (err) {
      TS.status(statusLine, `Could not load the models: ${err.message}`, true);
    }
  }

  load();
})();
