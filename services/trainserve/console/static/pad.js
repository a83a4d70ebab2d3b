/* A drawing pad for image models: a square canvas drawn on with a mouse, a pen or a finger
   (pointer events), read back as the model's input: the canvas cut into H x W blocks, each
   block's share of ink scaled to [0, pixelMax] (scikit-learn's digits: 0-16). */
"use strict";

const TSPad = (() => {
  const SIZE = 256;

  function create(container, {height, width, pixelMax, label}) {
    const canvas = TS.el("canvas", {width: SIZE, height: SIZE, class: "pad", role: "img", tabindex: 0,
      "aria-label": `${label}: draw with the mouse, a pen or a finger`});
    const preview = TS.el("canvas", {width, height, class: "pad-preview", role: "img",
      "aria-label": `What the model gets: ${height} by ${width} pixels`});
    const clear = TS.el("button", {type: "button"}, "Clear");
    container.append(TS.el("div", {class: "pad-row"}, canvas,
      TS.el("div", {class: "pad-side"}, TS.el("span", {class: "hint"}, `The model sees ${height}×${width}:`), preview, clear)));
    const ctx = canvas.getContext("2d");
    let last = null;
    const reset = () => { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, SIZE, SIZE); showPreview(); };

    function at(event) {
      const box = canvas.getBoundingClientRect();
      return [(event.clientX - box.left) * SIZE / box.width, (event.clientY - box.top) * SIZE / box.height];
    }
    function stroke(to) {
      ctx.strokeStyle = "#000";
      ctx.lineWidth = SIZE / Math.max(height, width) * 1.3;
      ctx.lineCap = "round"; ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(...(last || to));
      ctx.lineTo(...to);
      ctx.stroke();
      last = to;
    }
    canvas.addEventListener("pointerdown", (e) => { canvas.setPointerCapture(e.pointerId); last = null; stroke(at(e)); e.preventDefault(); });
    canvas.addEventListener("pointermove", (e) => { if (last) { stroke(at(e)); } });
    const end = () => { if (last) { last = null; showPreview(); } };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    clear.addEventListener("click", reset);

    /** The blocks' ink, row by row, in [0, 1]. */
    function ink() {
      const data = ctx.getImageData(0, 0, SIZE, SIZE).data;
      const out = new Array(height * width).fill(0);
      const bh = SIZE / height, bw = SIZE / width;
      for (let y = 0; y < SIZE; y++) {
        for (let x = 0; x < SIZE; x++) {
          const i = Math.min(height - 1, Math.floor(y / bh)) * width + Math.min(width - 1, Math.floor(x / bw));
          out[i] += 1 - data[(y * SIZE + x) * 4] / 255;
        }
      }
      return out.map((v) => v / (bh * bw));
    }
    function showPreview() {
      const pctx = preview.getContext("2d");
      const image = pctx.createImageData(width, height);
      ink().forEach((v, i) => { const g = Math.round(255 * (1 - v)); image.data.set([g, g, g, 255], i * 4); });
      pctx.putImageData(image, 0, 0);
    }
    reset();
    return {values: (channels) => {
      const one = ink().map((v) => Number((v * pixelMax).toFixed(4)));
      return Array.from({length: channels || 1}, () => one).flat();
    }, reset};
  }

  return {create};
})();
