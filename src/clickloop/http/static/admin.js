// clickloop admin: copy buttons, add-a-row buttons, confirmations. No framework.
"use strict";
document.addEventListener("click", (event) => {
  const copy = event.target.closest("[data-copy], [data-copy-text]");
  if (copy) {
    const field = copy.dataset.copy ? document.getElementById(copy.dataset.copy) : null;
    const text = field ? field.value : copy.dataset.copyText;
    const label = copy.dataset.label || (copy.dataset.label = copy.textContent);
    const done = (word) => { copy.textContent = word; setTimeout(() => { copy.textContent = label; }, 1500); };
    // A selection copy needs no permission: used on plain HTTP and whenever the clipboard API
    // is refused (a browser that denies clipboard-write to the page).
    const bySelection = () => {
      const area = field || Object.assign(document.createElement("textarea"), { value: text, readOnly: true });
      if (!field) { area.className = "offscreen"; document.body.appendChild(area); }
      area.select();
      let ok = false;
      try { ok = document.execCommand("copy"); } catch (error) { ok = false; }
      if (!field) area.remove();
      done(ok ? "Copied" : "Press Ctrl+C");
      if (!ok && field) field.focus();
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(() => done("Copied"), bySelection);
    } else {
      bySelection();
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
