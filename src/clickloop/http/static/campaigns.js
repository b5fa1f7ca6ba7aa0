// The campaign list: tick every row, count the ticked ones for the bulk buttons, ask before a
// bulk archive; custom dates show only for "Custom". Every control also works without this file.
"use strict";
const tickAll = document.getElementById("tick-all");
const ticks = () => Array.from(document.querySelectorAll("input[name=id][form=bulk]"));
const count = document.getElementById("bulk-count");
const recount = () => {
  const ticked = ticks().filter((box) => box.checked).length;
  if (count) count.textContent = ticked ? `${ticked} ticked:` : "Tick campaigns to change several at once:";
  document.querySelectorAll("#bulk button").forEach((button) => { button.disabled = ticked === 0; });
};
if (tickAll) {
  tickAll.addEventListener("change", () => { ticks().forEach((box) => { box.checked = tickAll.checked; }); recount(); });
  document.addEventListener("change", (event) => { if (event.target.matches("input[name=id][form=bulk]")) recount(); });
  recount();
}
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-confirm-bulk]");
  if (button && !window.confirm(button.dataset.confirmBulk)) event.preventDefault();
});
const period = document.getElementById("period");
if (period) {
  // Hidden dates are disabled too, so that a preset's form does not send them.
  const toggle = () => document.querySelectorAll("#campaign-filters .custom-date").forEach((label) => {
    label.hidden = period.value !== "custom";
    label.querySelector("input").disabled = label.hidden;
  });
  period.addEventListener("change", toggle);
  toggle();
}
