// The one client of the product's WebSockets, used by the conversation view (console.js) and
// the live pages (live.js): opens `path`, hands each JSON message to `handlers.message`, and
// when the connection drops opens it again with capped exponential backoff and jitter. The
// server resumes a stream that reopens (a snapshot, or a replay by seq), so a client only
// drops what it already has. A refusal close code ends the stream for good:
// 4401 not signed in, 4403 not allowed, 4404 no such stream (docs/architecture.md, Streams).
(function () {
  "use strict";

  const REFUSED = {
    4401: "signed out: sign in again to follow this",
    4403: "not allowed to follow this",
    4404: "this no longer exists",
  };
  const FIRST_DELAY = 500;
  const MAX_DELAY = 10000;

  function follow(path, handlers) {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const url = scheme + window.location.host + path;
    let delay = FIRST_DELAY;
    let socket = null;
    let stopped = false;

    function open() {
      socket = new WebSocket(url);
      socket.addEventListener("open", function () {
        delay = FIRST_DELAY;
        if (handlers.open) { handlers.open(); }
      });
      socket.addEventListener("message", function (event) {
        let message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        handlers.message(message);
      });
      socket.addEventListener("close", function (event) {
        if (stopped) { return; }
        if (REFUSED[event.code]) {
          stopped = true;
          if (handlers.refused) { handlers.refused(REFUSED[event.code], event.code); }
          return;
        }
        if (handlers.lost) { handlers.lost(); }
        window.setTimeout(open, delay / 2 + Math.random() * delay / 2);
        delay = Math.min(delay * 2, MAX_DELAY);
      });
    }

    open();
    return {
      close: function () { stopped = true; if (socket) { socket.close(); } },
    };
  }

  window.AgentOpsStream = { follow: follow, REFUSED: REFUSED };
})();
