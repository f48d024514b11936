// The queue's "select this page" box for bulk close; the list itself is server-rendered
// (live.js re-renders it, under the current filters and page, when handoffs come and go).
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    const all = event.target.closest("[data-select-page]");
    if (!all) { return; }
    document.querySelectorAll("input[data-select]").forEach(function (box) { box.checked = all.checked; });
  });
})();
