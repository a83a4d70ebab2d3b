/* The New job page: a picked spec file's text goes into the textarea (read here, in the
   browser; the form posts the text). */
"use strict";

(() => {
  const picker = document.getElementById("spec-file");
  const text = document.getElementById("spec");
  const statusLine = document.getElementById("spec-file-status");
  const limit = Number(document.getElementById("main").dataset.specLimitKib || 1024) * 1024;

  picker.addEventListener("change", async () => {
    const file = picker.files[0];
    if (!file) return;
    if (file.size > limit) {
      TS.status(statusLine, `${file.name} is ${TS.bytes(file.size)}: larger than a spec may be (${TS.bytes(limit)}).`, true);
      return;
    }
    text.value = await file.text();
    text.removeAttribute("aria-invalid");
    TS.status(statusLine, `${file.name} (${TS.bytes(file.size)}) is in the spec box.`);
    text.focus();
  });
})();
