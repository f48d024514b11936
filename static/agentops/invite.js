// The invitation token is the link's fragment: browsers never send it in a request line,
// so it stays out of access logs. Move it into the form, and out of the address bar.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    const field = document.querySelector("[data-invite-token]");
    if (!field) { return; }
    const fragment = window.location.hash.slice(1);
    if (fragment) {
      field.value = fragment;
      window.history.replaceState(null, "", window.location.pathname);
    }
    const missing = document.querySelector("[data-no-token]");
    if (missing) { missing.hidden = Boolean(field.value); }
  });
})();
