// clickloop admin: copy buttons, add-a-row buttons, confirmations. No framework.
"use strict";
document.addEventListener("click", (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const field = document.getElementById(copy.dataset.copy);
    const label = copy.dataset.label || (copy.dataset.label = copy.textContent);
    const done = () => { copy.textContent = "Copied"; setTimeout(() => { copy.textContent = label; }, 1500); };
    // The clipboard API needs a secure context; plain-HTTP installs fall back to a selection copy.
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, () => { field.select(); document.execCommand("copy"); done(); });
    } else {
      field.select();
      document.execCommand("copy");
      done();
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
