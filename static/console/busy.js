// Plain (non-htmx) form posts that navigate: show a spinner and stop double submits.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!form.matches || !form.matches("form[data-busy]") || event.defaultPrevented) { return; }
    const button = event.submitter || form.querySelector("button[type=submit]");
    window.setTimeout(function () {
      if (button) { button.disabled = true; }
      const spinner = form.querySelector(".spinner");
      if (spinner) { spinner.classList.add("busy"); }
    }, 0);
  });
})();
