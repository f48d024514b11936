// Small helpers htmx cannot do. No inline scripts: the CSP forbids them.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    const target = event.target.closest("[data-confirm]");
    if (target && !window.confirm(target.dataset.confirm)) {
      event.preventDefault();
      event.stopPropagation();
    }
  }, true);
  // htmx 2 swaps no 4xx response. A refused form action answers with its form again and the
  // reason (400/409/422/429…): show it. A whole page (Django's 403/404 pages) is not a partial
  // and is not swapped into a fragment.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const xhr = event.detail.xhr;
    const type = xhr.getResponseHeader("Content-Type") || "";
    if (xhr.status >= 400 && xhr.status < 500 && type.indexOf("text/html") === 0
        && !/^\s*(<!doctype|<html)/i.test(xhr.responseText)) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
