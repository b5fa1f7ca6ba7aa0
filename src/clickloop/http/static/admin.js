// clickloop admin: copy buttons, add-a-row buttons, confirmations. No framework.
"use strict";
document.addEventListener("click", (event) => {
  const copy = event.target.closest("[data-copy], [data-copy-text]");
  if (copy) {
    const field = copy.dataset.copy ? document.getElementById(copy.dataset.copy) : null;
    const text = field ? field.value : copy.dataset.copyText;
    const label = copy.dataset.label || (copy.dataset.label = copy.textContent);
    const done = (word) => { copy.textContent = word; setTimeout(() => { copy.textContent = label; }, 1500); };
    // The copy command first: it needs no clipboard permission (plain HTTP, a browser that
    // refuses or never answers the clipboard API's prompt); its copy event puts the text on
    // the clipboard. The clipboard API only when the command fails.
    const put = (clip) => { clip.clipboardData.setData("text/plain", text); clip.preventDefault(); };
    document.addEventListener("copy", put, { once: true });
    let copied = false;
    try { copied = document.execCommand("copy"); } catch (error) { copied = false; }
    document.removeEventListener("copy", put);
    if (field) field.select();
    if (copied) {
      done("Copied");
    } else if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(() => done("Copied"), () => done("Press Ctrl+C"));
    } else {
      done("Press Ctrl+C");
      if (field) field.focus();
    }
    return;
  }
  const add = event.target.closest("[data-add-row]");
  if (add) {
    const body = document.querySelector(`[data-rows="${add.dataset.addRow}"] tbody`);
    const last = body.lastElementChild;
    const row = last.cloneNode(true);
    row.querySelectorAll("input").forEach((input) => { input.value = ""; });
    row.querySelectorAll("select").forEach((select) => { select.selectedIndex = 0; });
    body.appendChild(row);
    const first = row.querySelector("input, select");
    if (first) first.focus();
  }
});
document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});
