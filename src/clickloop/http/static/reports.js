// The report page: a row opens its drill-down, the custom dates show only for "custom".
// Every control also works without this file (links and a GET form).
"use strict";
document.addEventListener("click", (event) => {
  const row = event.target.closest("#report-table tbody tr[data-href]");
  if (row && !event.target.closest("a, button, input, select")) window.location.href = row.dataset.href;
});
const preset = document.getElementById("preset");
if (preset) {
  const toggle = () => document.querySelectorAll(".custom-date").forEach((label) => {
    label.hidden = preset.value !== "";
  });
  preset.addEventListener("change", toggle);
  toggle();
}
