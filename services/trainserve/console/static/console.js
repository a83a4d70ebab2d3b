/* What every page of the trainserve console shares: fetching the console's JSON, making
   elements (data goes in as text nodes, never as markup), numbers and times. */
"use strict";

const TS = (() => {
  /** GET `url` as JSON; a 401 (signed out, session expired) goes to the sign-in page. */
  async function getJSON(url) {
    const response = await fetch(url, {headers: {Accept: "application/json"},
                                       credentials: "same-origin", cache: "no-store"});
    if (response.status === 401) {
      location.assign("/signin?next=" + encodeURIComponent(location.pathname + location.search));
      throw new Error("signed out");
    }
    const body = await response.json().catch(() => ({error: response.statusText}));
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  /** An element: el("td", {class: "num", title: "x"}, "text", child, ...). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** A metric value in at most 4 significant digits (1.234e-5 when tiny). */
  function num(value) {
    if (value === undefined || value === null || Number.isNaN(value)) return "–";
    if (value === 0) return "0";
    const abs = Math.abs(value);
    if (abs >= 1e5 || abs < 1e-3) return value.toExponential(2);
    return String(Number(value.toPrecision(4)));
  }

  /** "3 min ago" for an ISO time (the exact time is the title). */
  function ago(iso) {
    if (!iso) return "";
    const seconds = (Date.now() - Date.parse(iso)) / 1000;
    if (seconds < 60) return "just now";
    const units = [[86400, "d"], [3600, "h"], [60, "min"]];
    for (const [size, unit] of units) {
      if (seconds >= size) return `${Math.floor(seconds / size)} ${unit} ago`;
    }
    return "";
  }

  function timeCell(iso) {
    return iso ? el("time", {datetime: iso, title: new Date(iso).toLocaleString()}, ago(iso)) : "";
  }

  function stateBadge(state) {
    return el("span", {class: `state state-${state}`}, state);
  }

  function labelChips(labels) {
    return Object.entries(labels || {}).sort().map(([k, v]) => el("span", {class: "chip"}, `${k}=${v}`));
  }

  /** Replace the children of `node`. */
  function fill(node, ...children) {
    node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
  }

  function status(node, text, isError) {
    node.textContent = text;
    node.classList.toggle("error", Boolean(isError));
  }

  /** The session's CSRF token (the page's <main data-csrf>). */
  function csrf() {
    return document.getElementById("main").dataset.csrf || "";
  }

  /** POST `body` (JSON, or a File/Blob as it is) with the session's CSRF token in a header;
      the answer's JSON, or an Error with the console's message. */
  async function post(url, body) {
    const isFile = body instanceof Blob;
    const response = await fetch(url, {method: "POST", credentials: "same-origin", cache: "no-store",
      headers: {Accept: "application/json", "X-CSRF-Token": csrf(),
                "Content-Type": isFile ? "application/octet-stream" : "application/json"},
      body: isFile ? body : JSON.stringify(body)});
    if (response.status === 401) {
      location.assign("/signin?next=" + encodeURIComponent(location.pathname + location.search));
      throw new Error("signed out");
    }
    const answer = await response.json().catch(() => ({error: response.statusText}));
    if (!response.ok) throw new Error(answer.error || response.statusText);
    return answer;
  }

  /** A form that POSTs to `action` with the session's CSRF token, holding `children`. */
  function postForm(action, attrs, ...children) {
    const main = document.getElementById("main");
    return el("form", {method: "post", action, ...attrs},
      el("input", {type: "hidden", name: main.dataset.csrfField || "csrf_token", value: csrf()}), ...children);
  }

  /** "1.2 MiB" */
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }

  return {getJSON, el, num, ago, timeCell, stateBadge, labelChips, fill, status, csrf, post, postForm, bytes};
})();
