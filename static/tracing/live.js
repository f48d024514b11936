// Live pages: an element with data-live-ws="/ws/..." opens that WebSocket and, when events of
// the kinds in data-live-kinds arrive, asks htmx to re-render the element named by
// data-live-refresh (throttled: a busy run re-renders at most every data-live-throttle ms).
// The server renders and escapes everything; this file only moves triggers around, and
// appends a model call's streamed text (span.text) to its in-progress row as plain text.
// Connecting, reconnecting and refusals are stream.js's (the one client of the streams).
(function () {
  "use strict";

  function connect(el) {
    const kinds = (el.dataset.liveKinds || "").split(",").filter(Boolean);
    const throttle = Number(el.dataset.liveThrottle || 500);
    const status = el.querySelector("[data-live-status]");
    const openSpan = el.querySelector("[data-live-open]");
    let timer = null;
    let received = 0;
    // Text streamed into each open span, as {start, text}: chars [start, start + length) of
    // all it streamed. A row rendered by the server shows chars up to its data-text-end.
    const texts = {};

    // The page was rendered with spans up to data-last-seq: a replayed span above it
    // (stored between the page load and the socket opening) still needs a refresh.
    function hasUnseen(spans) {
      const target = document.querySelector(el.dataset.liveRefresh);
      const last = Number((target && target.dataset.lastSeq) || -1);
      if (last < 0) { return true; }
      return (spans || []).some(function (s) { return s.seq > last; });
    }

    function say(text) { if (status) { status.textContent = text; } }

    function addText(spanId, at, chunk) {
      const known = texts[spanId];
      if (!known || at > known.start + known.text.length) {
        texts[spanId] = { start: at, text: chunk };
        return;
      }
      const end = known.start + known.text.length;
      if (at + chunk.length > end) { known.text += chunk.slice(end - at); }
    }

    function paint(node) {
      const known = texts[node.dataset.spanId];
      if (!known) { return; }
      const shown = Number(node.dataset.textEnd || 0);
      const end = known.start + known.text.length;
      if (end <= shown) { return; }
      node.textContent += known.start > shown ? "… " + known.text : known.text.slice(shown - known.start);
      node.dataset.textEnd = String(end);
    }

    function paintAll() { document.querySelectorAll("[data-span-text]").forEach(paint); }

    function rowOf(spanId) {
      return document.querySelector("[data-span-id=\"" + window.CSS.escape(spanId) + "\"]");
    }

    function refresh() {
      if (timer) { return; }
      timer = window.setTimeout(function () {
        timer = null;
        const target = document.querySelector(el.dataset.liveRefresh);
        if (target && window.htmx) { window.htmx.trigger(target, "live-refresh"); }
      }, throttle);
    }

    document.body.addEventListener("htmx:afterSettle", paintAll);

    function onMessage(message) {
      received += 1;
      if (message.kind === "span.start" && openSpan) {
        openSpan.textContent = "running: " + message.name;
      } else if (message.kind === "spans" && openSpan) {
        openSpan.textContent = "";
      }
      if (message.kind === "span.start") {
        if (message.text) { addText(message.span_id, 0, String(message.text)); }
        if (!rowOf(message.span_id)) { refresh(); } // the server renders open spans too
        return;
      }
      if (message.kind === "span.text") {
        addText(message.span_id, Number(message.at || 0), String(message.text));
        const node = rowOf(message.span_id);
        const target = node && node.querySelector("[data-span-text]");
        if (target) { paint(target); }
        return;
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
    }

    window.AgentOpsStream.follow(el.dataset.liveWs, {
      open: function () {
        // Back after a drop: what the page missed is re-rendered (a trace replays by seq too).
        // With data-live-catch-up, so is what happened between the page's render and the
        // socket's first join (a takeover that completes while the watch page loads).
        const caughtUp = el.dataset.liveCatchUp !== undefined && !el.dataset.liveConnected;
        if (el.dataset.liveConnected === "0" || caughtUp) { refresh(); }
        el.dataset.liveConnected = "1";
        say("● live");
      },
      message: onMessage,
      lost: function () { el.dataset.liveConnected = "0"; say("reconnecting…"); },
      refused: function (text, code) {
        el.dataset.liveConnected = "0";
        el.dataset.liveRefused = String(code);
        say(text);
      },
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-ws]").forEach(connect);
  });
})();
