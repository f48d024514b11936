// Show only the form sections that apply to the chosen kind/transport.
// Markup: data-show-for="id_kind=http|mcp" on a section. Without JS every section shows.
(function () {
  "use strict";
  function update() {
    document.querySelectorAll("[data-show-for]").forEach(function (section) {
      const rule = section.dataset.showFor.split("=");
      const select = document.getElementById(rule[0]);
      if (!select) { return; }
      section.hidden = rule[1].split("|").indexOf(select.value) === -1;
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    const ids = new Set();
    document.querySelectorAll("[data-show-for]").forEach(function (section) {
      ids.add(section.dataset.showFor.split("=")[0]);
    });
    ids.forEach(function (id) {
      const select = document.getElementById(id);
      if (select) { select.addEventListener("change", update); }
    });
    update();
  });
})();
