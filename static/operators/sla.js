// Service-level timers on the queue ([data-sla]): green, amber from AMBER_AT of the target,
// red past it or once the server stored a breach. They count from the timestamps the page
// was rendered with, corrected by the server's clock ([data-server-now], seconds).
(function () {
  "use strict";
  const AMBER_AT = 0.75;

  function clock(ms) {
    const s = Math.round(Math.abs(ms) / 1000);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mm = h ? `${h}:${String(m).padStart(2, "0")}` : String(m);
    return `${mm}:${String(r).padStart(2, "0")}`;
  }

  function tick() {
    for (const el of document.querySelectorAll("[data-sla]")) {
      if (!("skew" in el.dataset)) {
        const box = el.closest("[data-server-now]");
        el.dataset.skew = box ? Number(box.dataset.serverNow) * 1000 - Date.now() : 0;
      }
      const now = Date.now() + Number(el.dataset.skew);
      const start = Number(el.dataset.slaStart), due = Number(el.dataset.slaDue);
      const done = (now - start) / Math.max(due - start, 1);
      const state = el.dataset.slaBreached === "1" || done >= 1 ? "red" : done >= AMBER_AT ? "amber" : "green";
      el.dataset.slaState = state;
      el.classList.remove("sla-green", "sla-amber", "sla-red");
      el.classList.add(`sla-${state}`);
      const left = el.querySelector("[data-sla-left]");
      if (left) left.textContent = now < due ? `${clock(due - now)} left` : `overdue ${clock(now - due)}`;
    }
  }

  tick();
  setInterval(tick, 1000);
})();
