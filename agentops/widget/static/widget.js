/* AgentOps chat widget: a launcher button and a panel holding the chat in an iframe served
   by the product, so the host page's CSS and scripts cannot reach into the conversation.
   <script src="https://HOST/static/widget.js" data-agent="demo" data-key="pk_…" async>
   Optional: data-user-id + data-user-token (hex HMAC-SHA256 of the id with the key's
   secret, computed by the host's backend) name a signed-in user. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.AgentOpsWidget) return;
  var d = script.dataset;
  var origin = new URL(script.src, location.href).origin;
  if (!d.key) { console.error("AgentOps widget: data-key is missing"); return; }
  var css =
    ":host{all:initial}" +
    ".launch{position:fixed;right:20px;bottom:20px;z-index:2147483646;width:56px;height:56px;border-radius:50%;border:0;background:#1f6feb;color:#fff;cursor:pointer;display:grid;place-items:center;box-shadow:0 4px 14px rgba(0,0,0,.25)}" +
    ".launch:focus-visible{outline:3px solid #f0b429;outline-offset:3px}" +
    ".panel{position:fixed;right:20px;bottom:88px;z-index:2147483647;width:370px;height:min(560px,calc(100vh - 110px));border-radius:12px;overflow:hidden;box-shadow:0 8px 30px rgba(0,0,0,.3);background:#fff}" +
    ".panel[hidden],div[hidden]{display:none}" +
    "iframe{border:0;width:100%;height:100%;display:block}" +
    "@media (max-width:480px){.panel{inset:0;width:100%;height:100%;border-radius:0}.open .launch{display:none}}";
  var host = document.createElement("div");
  host.setAttribute("data-agentops-widget", "checking");
  var root = host.attachShadow({ mode: "open" });
  try {
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
    root.adoptedStyleSheets = [sheet];
  } catch (e) {
    var style = document.createElement("style");
    style.textContent = css;
    root.appendChild(style);
  }
  var wrap = document.createElement("div");
  var button = document.createElement("button");
  button.type = "button";
  button.className = "launch";
  var ns = "http://www.w3.org/2000/svg";
  var icon = document.createElementNS(ns, "svg");
  icon.setAttribute("viewBox", "0 0 24 24");
  icon.setAttribute("width", "28");
  icon.setAttribute("height", "28");
  icon.setAttribute("aria-hidden", "true");
  var path = document.createElementNS(ns, "path");
  path.setAttribute("fill", "currentColor");
  path.setAttribute("d", "M4 3h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z");
  icon.appendChild(path);
  button.appendChild(icon);
  button.setAttribute("aria-label", "Open chat");
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("aria-controls", "agentops-chat");
  var panel = document.createElement("div");
  panel.className = "panel";
  panel.id = "agentops-chat";
  panel.hidden = true;
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", "Chat");
  var frame = null;
  var isOpen = false;
  var available = true;

  var frameReady = false; // until the frame says so, its window is still about:blank
  function post(message) {
    if (frame && frameReady && frame.contentWindow) frame.contentWindow.postMessage(message, origin);
  }
  function open() {
    if (!available) return;
    if (!frame) {
      frame = document.createElement("iframe");
      frame.title = "Chat";
      frame.referrerPolicy = "origin";
      frame.src = origin + "/widget/frame/?key=" + encodeURIComponent(d.key) +
        (d.agent ? "&agent=" + encodeURIComponent(d.agent) : "");
      panel.appendChild(frame);
    }
    isOpen = true;
    panel.hidden = false;
    wrap.className = "open";
    button.setAttribute("aria-expanded", "true");
    button.setAttribute("aria-label", "Close chat");
    frame.focus();
    post({ type: "aow:open" });
  }
  function close() {
    isOpen = false;
    panel.hidden = true;
    wrap.className = "";
    button.setAttribute("aria-expanded", "false");
    button.setAttribute("aria-label", "Open chat");
    button.focus();
  }
  button.addEventListener("click", function () { isOpen ? close() : open(); });
  document.addEventListener("keydown", function (e) { if (e.key === "Escape" && isOpen) close(); });
  window.addEventListener("message", function (e) {
    if (!frame || e.origin !== origin || e.source !== frame.contentWindow) return;
    var type = e.data && e.data.type;
    if (type === "aow:ready") {
      frameReady = true;
      // The identity goes to the product's origin only (strict targetOrigin), never in a URL.
      post({ type: "aow:identity", userId: d.userId || "", userToken: d.userToken || "" });
      if (isOpen) post({ type: "aow:open" });
    } else if (type === "aow:close") {
      close();
    }
  });
  wrap.appendChild(panel);
  wrap.appendChild(button);
  wrap.hidden = true;
  root.appendChild(wrap);
  (document.body || document.documentElement).appendChild(host);
  window.AgentOpsWidget = { open: open, close: close };
  // Shown only if the product says this page's origin may show the chat: elsewhere the
  // browser would leave the panel blank. If the check cannot be made (a host CSP without
  // connect-src, say), the launcher shows as before and the frame's own CSP decides.
  function settle(ok) {
    available = ok;
    wrap.hidden = !ok;
    host.setAttribute("data-agentops-widget", ok ? "ready" : "unavailable");
    if (!ok) console.warn("AgentOps widget: no chat here (key unknown, disabled, or not allowing " + location.origin + ")");
  }
  fetch(origin + "/widget/api/available?key=" + encodeURIComponent(d.key), { credentials: "omit" })
    .then(function (r) { return r.json(); })
    .then(function (r) { settle(r.available !== false); }, function () { settle(true); });
})();
