// Live pages: an element with data-live-ws="/ws/..." opens that WebSocket and, when events of
// the kinds in data-live-kinds arrive, asks htmx to re-render the element named by
// data-live-refresh (throttled: a busy run re-renders at most every data-live-throttle ms).
// The server renders and escapes everything; this file only moves triggers around.
(function () {
  "use strict";

  function connect(el) {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const url = scheme + window.location.host + el.dataset.liveWs;
    const kinds = (el.dataset.liveKinds || "").split(",").filter(Boolean);
    const throttle = Number(el.dataset.liveThrottle || 500);
    const status = el.querySelector("[data-live-status]");
    const openSpan = el.querySelector("[data-live-open]");
    let timer = null;
    let backoff = 1000;
    let received = 0;

    // The page was rendered with spans up to data-last-seq: a replayed span above it
    // (stored between the page load and the socket opening) still needs a refresh.
    function hasUnseen(spans) {
      const target = document.querySelector(el.dataset.liveRefresh);
      const last = Number((target && target.dataset.lastSeq) || -1);
      if (last < 0) { return true; }
      return (spans || []).some(function (s) { return s.seq > last; });
    }

    function say(text) { if (status) { status.textContent = text; } }

    function refresh() {
      if (timer) { return; }
      timer = window.setTimeout(function () {
        timer = null;
        const target = document.querySelector(el.dataset.liveRefresh);
        if (target && window.htmx) { window.htmx.trigger(target, "live-refresh"); }
      }, throttle);
    }

    function open() {
      const ws = new WebSocket(url);
      ws.addEventListener("open", function () { backoff = 1000; say("● live"); });
      ws.addEventListener("message", function (event) {
        let message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        received += 1;
        if (message.kind === "span.start" && openSpan) {
          openSpan.textContent = "running: " + message.name;
        } else if (message.kind === "spans" && openSpan) {
          openSpan.textContent = "";
        }
        if (typeof message.kind === "string" && message.kind.indexOf("alert.") === 0) {
          document.body.dispatchEvent(new CustomEvent("alerts-changed"));
        }
        if (message.kind === "replay.done") { return; }
        if (message.kind === "spans" && !hasUnseen(message.spans)) { return; }
        if (!kinds.length || kinds.indexOf(message.kind) !== -1) {
          say("● live · " + received + " event" + (received === 1 ? "" : "s"));
          refresh();
        }
      });
      ws.addEventListener("close", function (event) {
        if (event.code === 4403 || event.code === 1008) { say("not allowed to follow this stream"); return; }
        say("reconnecting…");
        window.setTimeout(open, backoff);
        backoff = Math.min(backoff * 2, 15000);
      });
    }
    open();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-ws]").forEach(connect);
  });
})();
