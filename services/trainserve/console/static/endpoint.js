/* An endpoint's page: its state, versions and traffic split (polled), its requests, latency
   and errors (from the serving metrics), the rollout controls and the try-it panel. */
"use strict";

(() => {
  const POLL_MS = 2000;
  const main = document.getElementById("main");
  const name = main.dataset.endpoint;
  const base = `/api/endpoints/${encodeURIComponent(name)}`;
  const $ = (id) => document.getElementById(id);
  const {el, num, fill} = TS;
  let panelBuilt = false, pad = null, panel = null;

  function summary(e, model) {
    const items = [["Model", `${e.model_name} v${e.model_version}`], ["Owner", e.user || "–"],
      ["Task", model ? model.task : "–"], ["REST", el("span", {class: "mono"}, e.rest_url || "–")],
      ["gRPC", el("span", {class: "mono"}, e.grpc_target || "–")],
      ["Batching", e.max_batch_size > 1 ? `up to ${e.max_batch_size}` : "off"],
      ["Updated", e.updated ? new Date(e.updated).toLocaleString() : "–"]];
    if (model && model.job_id) items.push(["Trained by", el("a", {href: `/jobs/${encodeURIComponent(model.job_id)}`, class: "mono"}, model.job_id)]);
    fill($("ep-summary"), items.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
  }

  function split(e) {
    const box = $("split");
    fill(box, e.split.map((s) => el("div", {class: `split-part split-${s.role} w${Math.round(s.percent / 5) * 5}`, dataset: {version: s.version, percent: s.percent}},
      `v${s.version} · ${s.percent}%`)));
    const text = e.split.map((s) => `version ${s.version} (${s.role}, ${s.state}) takes ${s.percent}% of the requests` +
      (s.role === "canary" && s.state !== "ready" ? ` — ${s.target_percent}% once it is loaded` : "")).join("; ");
    $("split-text").textContent = text + ".";
    box.dataset.split = e.split.map((s) => `${s.version}:${s.percent}`).join(",");
    const rolling = Boolean(e.canary_version);
    $("promote-form").hidden = !rolling;
    $("rollback-form").hidden = !rolling;
  }

  function versions(list, e) {
    const select = $("ro-version");
    if (select.options.length === list.length + 1) return;
    fill(select, el("option", {value: 0}, "latest"), list.map((v) => el("option", {value: v}, `v${v}${v === e.model_version ? " (serving)" : ""}`)));
    const newer = list.find((v) => v !== e.model_version);
    if (newer) select.value = String(newer);
  }

  async function refresh() {
    try {
      const answer = await TS.getJSON(base);
      const e = answer.endpoint;
      const badge = $("ep-state");
      badge.className = `state state-${e.state}`;
      badge.textContent = e.state;
      $("ep-message").textContent = e.message && e.message !== e.state ? e.message : "";
      summary(e, answer.model);
      split(e);
      versions(answer.versions, e);
      if (!panelBuilt && answer.model) buildPanel(answer.panel, answer.model);
      main.dataset.state = e.state;
    } catch (err) {
      TS.status($("ep-message"), err.message, true);
    }
    setTimeout(refresh, POLL_MS);
  }

  async function stats() {
    try {
      const s = await TS.getJSON(`${base}/stats`);
      if (!s.available) {
        fill($("traffic"));
        $("traffic-source").textContent = `No serving metrics here (${s.source}).`;
      } else {
        const ms = (v) => (v === null || v === undefined ? "–" : `${num(v)} ms`);
        const items = [["Requests / s", s.rate_per_s === null ? "–" : num(s.rate_per_s)],
          ["Errors / s", s.error_rate_per_s === null ? "–" : num(s.error_rate_per_s)],
          ["Requests (total)", num(s.requests)], ["Errors (total)", num(s.errors)],
          ["Latency mean", ms(s.latency_mean_ms)], ["Latency p50", ms(s.latency_p50_ms)], ["Latency p99", ms(s.latency_p99_ms)],
          ["By version", Object.entries(s.by_version).map(([v, n]) => `v${v}: ${num(n)}`).join(", ") || "–"],
          ["By status", Object.entries(s.by_code).map(([c, n]) => `${c}: ${num(n)}`).join(", ") || "–"]];
        fill($("traffic"), items.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
        $("traffic").dataset.requests = String(s.requests);
        $("traffic-source").textContent = `From the serving metrics (${s.source}); rates over the last ${s.window_s} s of this page's reads. Ray exports them every few seconds.`;
      }
    } catch (err) {
      TS.status($("traffic-source"), `Could not read the serving metrics: ${err.message}`, true);
    }
    setTimeout(stats, 3000);
  }

  // -- try it ------------------------------------------------------------------------------
  function field(id, text, input) {
    return el("div", {class: "field"}, el("label", {for: id}, text), input);
  }

  function buildPanel(p, model) {
    panelBuilt = true;
    panel = p;
    const box = $("try-fields");
    const form = $("try-form");
    if (p.kind === "numbers") {
      box.append(el("div", {class: "features"}, Array.from({length: p.features}, (_, i) =>
        field(`f-${i}`, p.names[i] || `Feature ${i + 1}`, el("input", {id: `f-${i}`, name: `f${i}`, type: "number", step: "any", value: 0, required: true})))));
    } else if (p.kind === "row") {
      box.append(el("div", {class: "features"}, p.columns.map((c, i) => field(`c-${i}`, c.name,
        c.kind === "categorical" || c.kind === "binary"
          ? el("select", {id: `c-${i}`}, el("option", {value: ""}, "(missing)"), c.categories.map((v) => el("option", {value: v}, v)))
          : el("input", {id: `c-${i}`, type: "text", inputmode: "decimal", maxlength: 200, value: "",
            required: !c.missing_ok, placeholder: c.missing_ok ? "blank: missing" : ""})))));
    } else if (p.kind === "image") {
      pad = TSPad.create(box, {height: p.height, width: p.width, pixelMax: p.pixel_max, label: "Drawing pad"});
      box.append(field("pixel-max", "Pixel value of full ink", el("input", {id: "pixel-max", type: "number", step: "any", min: 0, value: p.pixel_max})));
    } else if (p.kind === "prompt") {
      box.append(field("prompt", "Prompt", el("textarea", {id: "prompt", rows: 3, maxlength: 2000, required: true, spellcheck: "false"}, "The ")),
        el("div", {class: "filters"},
          field("max-new", "Characters to generate", el("input", {id: "max-new", type: "number", min: 1, max: 500, value: 100})),
          field("temperature", "Temperature", el("input", {id: "temperature", type: "number", min: 0.01, max: 100, step: "any", value: 0.8})),
          field("seed", "Seed (optional)", el("input", {id: "seed", type: "number", min: 0, step: 1}))));
    } else if (p.kind === "samples") {
      box.append(el("div", {class: "filters"},
        field("num-samples", "Samples", el("input", {id: "num-samples", type: "number", min: 1, max: 16, value: 4})),
        field("seed", "Seed (optional)", el("input", {id: "seed", type: "number", min: 0, step: 1}))));
    } else {
      $("try-hint").textContent = `The try-it panel has no form for this model's inputs (${model.inputs.map((t) => t.name).join(", ")}); use trainserve predict.`;
      return;
    }
    form.hidden = false;
  }

  function request() {
    const body = {kind: panel.kind, inference_token: $("try-token").value};
    if (panel.kind === "numbers") body.values = Array.from({length: panel.features}, (_, i) => Number($(`f-${i}`).value));
    if (panel.kind === "row") body.cells = panel.columns.map((_, i) => $(`c-${i}`).value);
    if (panel.kind === "image") {
      const max = Number($("pixel-max").value) || panel.pixel_max;
      body.values = pad.values(panel.channels).map((v) => v * max / panel.pixel_max);
    }
    if (panel.kind === "prompt") Object.assign(body, {prompt: $("prompt").value, max_new_tokens: $("max-new").value, temperature: $("temperature").value, seed: $("seed").value});
    if (panel.kind === "samples") Object.assign(body, {num_samples: $("num-samples").value, seed: $("seed").value});
    return body;
  }

  function showAnswer(a) {
    const parts = [];
    if (a.label !== undefined) {
      parts.push(el("p", {class: "label-answer"}, "Label: ", el("strong", {id: "answer-label"}, a.label)));
      parts.push(el("table", {class: "data compact probs"}, el("caption", {}, "Probability of each class"),
        el("thead", {}, el("tr", {}, el("th", {scope: "col"}, "Class"), el("th", {scope: "col"}, "Probability"))),
        el("tbody", {}, a.probabilities.map((p) => el("tr", {class: String(p.class) === String(a.label) ? "best-row" : null},
          el("th", {scope: "row"}, p.class),
          el("td", {}, el("meter", {min: 0, max: 1, value: p.p, "aria-label": `class ${p.class}`}), ` ${num(p.p)}`))))));
    }
    if (a.text !== undefined) parts.push(el("pre", {class: "spec generated", id: "answer-text"}, a.text));
    if (a.label === undefined && a.text === undefined) {
      parts.push(el("pre", {class: "spec"}, JSON.stringify(a.outputs, null, 1).slice(0, 20000)));
    }
    parts.push(el("p", {class: "hint"}, `Answered by model version ${a.model_version ?? "?"}.`));
    fill($("try-answer"), parts);
  }

  $("try-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const statusLine = $("try-status");
    TS.status(statusLine, "Sending…");
    $("try-send").disabled = true;
    try {
      const started = performance.now();
      showAnswer(await TS.post(`${base}/predict`, request()));
      TS.status(statusLine, `Answered in ${Math.round(performance.now() - started)} ms.`);
    } catch (err) {
      TS.status(statusLine, `Refused: ${err.message}`, true);
    } finally {
      $("try-send").disabled = false;
    }
  });

  refresh();
  stats();
})();
