/* The chat inside the widget's iframe. Everything the agent, a tool or an operator wrote is
   untrusted: it is put in the page with textContent only, never as HTML. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var root = $("aow"), log = $("aow-log"), form = $("aow-form"), input = $("aow-input");
  var notice = $("aow-notice"), errorBox = $("aow-error"), send = $("aow-send");
  var agentName = $("aow-title").textContent;
  var allowed = (root.dataset.allowed || "").split(" ");
  var token = root.dataset.token;
  var sessionId = null, status = "new", lastSeq = 0;
  var ws = null, retries = 0, refused = false, stream = null, watchWaiters = [];
  var parentOrigin = null;
  var rate = $("aow-rate"), rateForm = $("aow-rate-form"), rateThanks = $("aow-rate-thanks");
  var rateSession = null;
  var embedded = window.parent !== window;

  function show(el, text) { el.textContent = text || ""; el.hidden = !text; }
  function scroll() { log.scrollTop = log.scrollHeight; }
  function bubble(role, who, text) {
    var li = document.createElement("li");
    li.className = "aow-msg aow-" + role;
    var name = document.createElement("span");
    name.className = "aow-who";
    name.textContent = who;
    var body = document.createElement("span");
    body.className = "aow-body";
    body.textContent = text;
    li.appendChild(name);
    li.appendChild(body);
    log.appendChild(li);
    scroll();
    return li;
  }
  function who(m) {
    if (m.role === "user") return "You";
    if (m.role === "operator") return (m.operator || "Support") + " (support team)";
    return m.agent || agentName;
  }
  function endStream() { if (stream) { stream.li.remove(); stream = null; } }
  function onMessage(m) {
    if (m.seq <= lastSeq) return;
    lastSeq = m.seq;
    if (m.role === "assistant") endStream();
    bubble(m.role, who(m), m.content);
  }
  function onToken(e) {
    if (!stream || stream.run !== e.run_id) {
      endStream();
      stream = { run: e.run_id, li: bubble("assistant", agentName, "") };
      stream.li.classList.add("aow-typing");
      stream.li.setAttribute("data-streaming", "");
    }
    stream.li.lastChild.textContent += e.text;
    scroll();
  }
  function rated(score) {
    rateForm.hidden = true;
    rateThanks.firstChild.textContent = "Thank you: you rated this conversation " + score + " of 5.";
    rateThanks.hidden = false;
  }
  function offerRating(rating) {
    rateSession = rating ? sessionId : null;
    rate.hidden = !rating;
    if (!rating) return;
    if (rating.score) { rated(rating.score); return; }
    rateThanks.hidden = true;
    rateForm.hidden = false;
  }
  rateForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var picked = rateForm.querySelector("input[name=score]:checked");
    if (!picked || !rateSession) return;
    show(errorBox, "");
    api("rating", { session_id: rateSession, score: Number(picked.value), comment: $("aow-rate-comment").value })
      .then(function (r) { rated(r.score); })
      .catch(function (err) { show(errorBox, err.message); });
  });
  $("aow-rate-change").addEventListener("click", function () { rateThanks.hidden = true; rateForm.hidden = false; });
  function onState(s) {
    if (s.session_id) sessionId = s.session_id;
    offerRating(s.rating);
    status = s.status;
    if (s.status === "handed_off") {
      show(notice, s.operator ? s.operator + " from the support team has joined." : "A person will join the conversation shortly.");
    } else if (s.status === "closed") {
      show(notice, "This conversation was closed. Write to start a new one.");
      scroll(); // the notice and the rating took room from the log: keep its end in view
    } else {
      show(notice, "");
    }
    var waiters = watchWaiters;
    watchWaiters = [];
    waiters.forEach(function (w) { w(); });
  }
  var handlers = {
    state: onState,
    message: onMessage,
    token: onToken,
    status: function (e) {
      if (e.status === "handed_off") { endStream(); status = "handed_off"; show(notice, "A person will join the conversation shortly."); }
      else if (e.status === "failed") { endStream(); show(errorBox, "Sorry, something went wrong. Please try again."); }
    },
    operator: function (e) { status = "handed_off"; show(notice, e.name + " from the support team has joined."); },
    handback: function (e) {
      if (e.resolution === "closed") {
        status = "closed";
        show(notice, "This conversation was closed. Write to start a new one.");
        offerRating({ score: null });
        scroll(); // the notice and the rating took room from the log: keep its end in view
      }
      else { status = "active"; show(notice, "You are chatting with " + agentName + " again."); }
    },
    refused: function (e) { refused = true; show(errorBox, e.error); }
  };

  function connect() {
    ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/widget/");
    ws.onopen = function () {
      retries = 0;
      root.setAttribute("data-connected", "1");
      ws.send(JSON.stringify({ kind: "hello", token: token, session: sessionId, after: lastSeq }));
    };
    ws.onmessage = function (e) {
      var data = JSON.parse(e.data);
      var handle = handlers[data.kind];
      if (handle) handle(data);
    };
    ws.onclose = function (e) {
      root.removeAttribute("data-connected");
      endStream(); // the stored answer replaces what was streaming: no gap, no repeat
      if (refused || e.code === 4403) return;
      retries += 1;
      setTimeout(connect, Math.min(500 * Math.pow(2, retries), 10000));
    };
  }
  window.aowDrop = function () { if (ws) ws.close(); }; // tests: a dropped connection

  function api(path, body) {
    return fetch("/widget/api/" + path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Widget-Token": token },
      body: JSON.stringify(body || {}),
      credentials: "same-origin"
    }).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) throw new Error(data.error || "Error " + r.status);
        return data;
      });
    });
  }
  function watch(id) {
    if (id === sessionId && status !== "closed") return Promise.resolve();
    if (id !== sessionId) { lastSeq = 0; log.textContent = ""; }
    return new Promise(function (resolve) {
      watchWaiters.push(resolve);
      ws.send(JSON.stringify({ kind: "watch", session: id, after: lastSeq }));
    });
  }
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text || send.disabled) return;
    show(errorBox, "");
    send.disabled = true;
    var ready = sessionId && status !== "closed"
      ? Promise.resolve()
      : api("session").then(function (r) { return watch(r.session_id); });
    ready.then(function () { return api("messages", { content: text }); })
      .then(function () { input.value = ""; })
      .catch(function (err) { show(errorBox, err.message); })
      .then(function () { send.disabled = false; input.focus(); });
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  function close() { if (parentOrigin) window.parent.postMessage({ type: "aow:close" }, parentOrigin); }
  $("aow-close").addEventListener("click", close);
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") close(); });

  var started = false;
  function start() { if (!started) { started = true; connect(); } }
  window.addEventListener("message", function (e) {
    if (e.source !== window.parent || allowed.indexOf(e.origin) < 0) return;
    var data = e.data || {};
    if (data.type === "aow:open") { input.focus(); return; }
    if (data.type !== "aow:identity" || started) return;
    parentOrigin = e.origin;
    if (!data.userId) { start(); return; }
    api("identify", { user_id: data.userId, user_token: data.userToken })
      .then(function (r) { token = r.token; start(); })
      .catch(function (err) { refused = true; show(errorBox, "Sign-in check failed: " + err.message); });
  });
  if (embedded) {
    window.parent.postMessage({ type: "aow:ready" }, "*"); // carries nothing: any parent may see it
    setTimeout(function () { if (!parentOrigin) start(); }, 3000); // a parent that never answers (not widget.js): chat anonymously
  } else {
    start();
  }
})();
