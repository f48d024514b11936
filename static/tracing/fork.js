// The run page's "fork after step k" links in the trace open that step's fork form (a closed
// <details> further down) and put the cursor in its message. Delegated: the live part of the
// page is re-rendered while the run goes on.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    const link = event.target.closest && event.target.closest("a.fork-link");
    if (!link) { return; }
    const form = document.querySelector(link.getAttribute("href"));
    if (!form || form.tagName !== "DETAILS") { return; }
    form.open = true;
    const field = form.querySelector("textarea");
    if (field) { field.focus({ preventScroll: true }); }
  });
})();
