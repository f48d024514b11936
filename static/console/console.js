// The conversation view (console and the operator's claimed view): follows
// /ws/sessions/<id>/ (through stream.js), streams the answer token by token and shows tool
// calls inline. A stored message has one renderer, the server's template
// (console/session.html#message): when the stream says a message was stored, or a
// reconnect's snapshot holds one the page lacks, the page fetches the server's rendering of
// what changed (`data-items-url`) and puts each message in place by its seq, so nothing
// shows twice and nothing is lost. What is not stored yet (streamed text, a tool call
// running) is shown in the server's markup from <template>s, filled in with textContent.
(function () {
  "use strict";

  const LABELS = {
    queued: "Queued", running: "Running", waiting: "Waiting", handed_off: "Handed off",
    succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled",
  };
  const FINISHED = ["handed_off", "succeeded", "failed", "cancelled"];
  const ACTIVE = ["queued", "running", "waiting"];

  function pretty(args) {
    if (typeof args !== "string") { return JSON.stringify(args, null, 2); }
    try { return JSON.stringify(JSON.parse(args), null, 2); } catch (e) { return args; }
  }

  const UNSETTLED = ["started", "running", "awaiting_approval"];

  function init(root) {
    const list = root.querySelector("[data-messages]");
    const streamBox = root.querySelector("[data-streaming]");
    const pendingTemplate = root.querySelector("template[data-pending-template]");
    const streamingTemplate = root.querySelector("template[data-streaming-template]");
    let streaming = null;
    let fetching = false;
    let fetchAgain = false;

    function q(sel) { return root.querySelector(sel); }
    function say(text) { const n = q("[data-convo-live]"); if (n) { n.textContent = text; } }

    function nearBottom() {
      return list.scrollHeight - list.scrollTop - list.clientHeight < 120;
    }
    function stickToBottom(was) { if (was) { list.scrollTop = list.scrollHeight; } }
    // A closed conversation ends with its last message in view: the notices and the rating
    // that appear on closing push it out of the list's window, or the page's.
    function showLast() {
      list.scrollTop = list.scrollHeight;
      const items = list.querySelectorAll("li[data-seq]");
      if (items.length) { items[items.length - 1].scrollIntoView({ block: "nearest" }); }
    }

    function findCall(callId) {
      const all = root.querySelectorAll("details.toolcall");
      for (let i = 0; i < all.length; i++) { if (all[i].dataset.callId === callId) { return all[i]; } }
      return null;
    }

    function shown(seq) {
      return list.querySelector("[data-seq=\"" + seq + "\"], [data-result-seq=\"" + seq + "\"]") !== null;
    }

    function lastSeq() {
      let last = 0;
      list.querySelectorAll("[data-seq], [data-result-seq]").forEach(function (n) {
        last = Math.max(last, Number(n.dataset.seq || n.dataset.resultSeq || 0));
      });
      return last;
    }

    function unsettledCalls() {
      const ids = [];
      list.querySelectorAll("li[data-seq] details.toolcall").forEach(function (d) {
        if (UNSETTLED.indexOf(d.querySelector("[data-tc-status]").textContent) !== -1) { ids.push(d.dataset.callId); }
      });
      return ids;
    }

    function setCallStatus(details, status) {
      const badge = details.querySelector("[data-tc-status]");
      badge.className = "badge status-" + status;
      badge.textContent = status;
    }

    function insertBySeq(li, seq) {
      const items = list.querySelectorAll("li[data-seq]");
      for (let i = 0; i < items.length; i++) {
        if (Number(items[i].dataset.seq) > seq) { list.insertBefore(li, items[i]); return; }
      }
      list.insertBefore(li, list.querySelector("[data-empty]"));
    }

    function clearStreaming() {
      if (streaming) { streaming.node.remove(); streaming = null; }
    }

    // The server's rendering of the stored messages the page lacks or shows out of date.
    function place(html) {
      const was = nearBottom();
      const parsed = document.createElement("template");
      parsed.innerHTML = html; // rendered and escaped by the server's template
      parsed.content.querySelectorAll("li[data-seq]").forEach(function (li) {
        li.querySelectorAll("details.toolcall").forEach(function (details) {
          const before = findCall(details.dataset.callId);
          if (!before) { return; }
          details.open = before.open;
          const holder = before.closest("li[data-pending]");
          if (holder) { holder.remove(); }
        });
        const existing = list.querySelector("li[data-seq=\"" + li.dataset.seq + "\"]");
        if (existing) { existing.replaceWith(li); } else { insertBySeq(li, Number(li.dataset.seq)); }
        if (window.htmx) { window.htmx.process(li); } // its forms (the answer's thumbs) post by htmx
        if (streaming && streaming.answered) { clearStreaming(); }
      });
      const empty = list.querySelector("[data-empty]");
      if (empty) { empty.hidden = list.querySelector("li[data-seq], li[data-pending]") !== null; }
      if (closed()) { showLast(); } else { stickToBottom(was); }
    }

    function refresh() {
      if (fetching) { fetchAgain = true; return; }
      fetching = true;
      const params = new URLSearchParams({ after: String(lastSeq()) });
      unsettledCalls().forEach(function (id) { params.append("call", id); });
      fetch(root.dataset.itemsUrl + "?" + params.toString(), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) { place(html); } })
        .catch(function () { /* the next event or reconnect asks again */ })
        .finally(function () {
          fetching = false;
          if (fetchAgain) { fetchAgain = false; refresh(); }
        });
    }

    function onMessage(m) {
      if (m.role === "assistant" && m.content && streaming && streaming.runId === m.run_id) {
        streaming.answered = true;
      }
      if (!shown(m.seq)) { refresh(); }
    }

    function onToken(ev) {
      const was = nearBottom();
      if (!streaming || streaming.runId !== ev.run_id) {
        clearStreaming();
        const node = streamingTemplate.content.firstElementChild.cloneNode(true);
        streamBox.append(node);
        streaming = { runId: ev.run_id, node: node, body: node.querySelector("[data-stream-body]"), answered: false };
      }
      streaming.body.textContent += ev.text;
      stickToBottom(was);
    }

    function onToolCall(ev) {
      let details = findCall(ev.call_id);
      if (!details) {
        const holder = pendingTemplate.content.firstElementChild.cloneNode(true);
        details = holder.querySelector("details");
        details.dataset.callId = ev.call_id;
        details.querySelector(".tool-name").textContent = ev.tool;
        details.querySelector("[data-tc-args]").textContent = pretty(ev.arguments);
        list.insertBefore(holder, list.querySelector("[data-empty]"));
        list.querySelector("[data-empty]").hidden = true;
      }
      setCallStatus(details, "running");
    }

    function onToolResult(ev) {
      const details = findCall(ev.call_id);
      if (details) {
        details.querySelector("[data-tc-result]").textContent = ev.content;
        setCallStatus(details, String(ev.content).indexOf("Error") === 0 ? "failed" : "succeeded");
      }
      refresh(); // the stored status and duration
    }

    // The composer takes no message while a run lasts (the server would refuse it). The
    // server renders it disabled for the run it has just started (data-run); that run may
    // have ended before the form was swapped in, so ended runs are remembered.
    const endedRuns = {};
    let activeRun = "";
    function composerState() {
      const form = document.querySelector("form[data-composer]");
      if (!form) { return; }
      if (form.dataset.run) {
        if (!endedRuns[form.dataset.run]) { activeRun = form.dataset.run; }
        form.removeAttribute("data-run");
      }
      const busy = Boolean(activeRun) && !closed();
      const fields = form.querySelector("[data-composer-fields]");
      if (fields) { fields.disabled = busy || closed(); }
      const note = form.querySelector("[data-composer-busy]");
      if (note) { note.hidden = !busy; }
    }
    document.addEventListener("htmx:afterSettle", composerState);

    function setRun(ev) {
      if (!ev) { return; }
      if (ev.run_id) {
        if (ACTIVE.indexOf(ev.status) !== -1 && !endedRuns[ev.run_id]) { activeRun = ev.run_id; }
        else if (ACTIVE.indexOf(ev.status) === -1) {
          endedRuns[ev.run_id] = true;
          if (activeRun === ev.run_id) { activeRun = ""; }
        }
        composerState();
      }
      const badge = q("[data-run-badge]");
      const detail = q("[data-run-detail]");
      const link = q("[data-run-link]");
      if (badge) { badge.className = "badge status-" + ev.status; badge.textContent = LABELS[ev.status] || ev.status; }
      if (detail) {
        let text = "";
        if (ev.status === "waiting") { text = "waiting: " + (ev.wait_reason || "backoff"); }
        else if (ev.status === "failed") { text = (ev.error_class || "failed") + (ev.error_message ? ": " + ev.error_message : ""); }
        else if (ev.status === "handed_off") { text = "handed off: " + (ev.wait_reason || ""); }
        detail.textContent = text;
      }
      if (link && ev.run_id) { link.href = "/runs/" + encodeURIComponent(ev.run_id) + "/"; link.hidden = false; }
      const cancel = q("[data-run-cancel]");
      if (cancel && ev.run_id) {
        const action = "/runs/" + encodeURIComponent(ev.run_id) + "/cancel";
        if (cancel.getAttribute("action") !== action) {
          cancel.setAttribute("action", action);
          q("[data-cancel-result]").textContent = "";
        }
        cancel.hidden = ACTIVE.indexOf(ev.status) === -1 || closed();
        cancel.querySelector("button").disabled = false;
      }
      if (ev.status === "handed_off") { showHandoff(null); }
      if (FINISHED.indexOf(ev.status) !== -1) {
        clearStreaming();
        if (unsettledCalls().length) { refresh(); }
        // Panes beside the conversation (the agent builder's context) refresh on it.
        root.dispatchEvent(new CustomEvent("agentops:run-finished", { bubbles: true, detail: { run_id: ev.run_id, status: ev.status } }));
      }
    }

    function showHandoff(operator) {
      const notice = q("[data-handoff-notice]");
      if (!notice) { return; }
      notice.hidden = false;
      const text = notice.querySelector("[data-handoff-text]");
      if (operator) { text.textContent = operator + " (a human operator) has joined the conversation."; }
    }

    function closed() { return root.dataset.sessionStatus === "closed"; }

    function onSession(session) {
      root.dataset.sessionStatus = session.status;
      if (session.status === "handed_off") { showHandoff(null); }
      else { const n = q("[data-handoff-notice]"); if (n) { n.hidden = true; } }
      const notice = q("[data-closed-notice]");
      if (notice) { notice.hidden = session.status !== "closed"; }
      // The composer sits outside the conversation's root: a closed session takes no messages.
      const composer = document.querySelector("form[data-composer]");
      const closedText = document.querySelector("[data-composer-closed]");
      if (composer && closedText) {
        composer.hidden = closed();
        closedText.hidden = !closed();
        composer.querySelectorAll("textarea, button").forEach(function (n) { n.disabled = closed(); });
      }
      const cancel = q("[data-run-cancel]");
      if (cancel && closed()) { cancel.hidden = true; }
      const rating = document.querySelector("[data-rating]"); // the end user rates a closed one
      if (rating) { rating.hidden = !closed(); }
      if (closed()) { showLast(); }
    }

    // Cancel without leaving the page; the run's status arrives on the stream.
    root.addEventListener("submit", function (event) {
      const form = event.target;
      if (!form.matches("form[data-run-cancel]")) { return; }
      event.preventDefault();
      const button = form.querySelector("button");
      const result = q("[data-cancel-result]");
      button.disabled = true;
      result.textContent = "cancelling…";
      fetch(form.getAttribute("action"), {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(function (r) { return r.json().then(function (data) { return { ok: r.ok, data: data }; }); })
        .then(function (answer) {
          result.textContent = answer.ok ? "" : (answer.data.error || "not cancelled");
          if (answer.data.status) { setRun({ run_id: answer.data.run, status: answer.data.status }); }
        })
        .catch(function () { result.textContent = "not cancelled: no answer, try again"; button.disabled = false; });
    });

    function handle(ev) {
      switch (ev.kind) {
        case "snapshot":
          clearStreaming();
          onSession({ status: ev.status });
          setRun(ev.run);
          if (ev.messages.some(function (m) { return !shown(m.seq); }) || unsettledCalls().length) { refresh(); }
          root.dataset.synced = String(Number(root.dataset.synced || 0) + 1);
          break;
        case "token": onToken(ev); break;
        case "coalesced": refresh(); break; // the server dropped tokens this page could not take
        case "message": onMessage(ev.message); break;
        case "tool.call": onToolCall(ev); break;
        case "tool.result": onToolResult(ev); break;
        case "run.status": setRun(ev); break;
        case "approval.requested": {
          const d = q("[data-run-detail]");
          if (d) { d.textContent = "waiting: approval needed for " + ev.tool; }
          break;
        }
        case "approval.decided": {
          const d = q("[data-run-detail]");
          if (d) { d.textContent = ev.tool + (ev.approved ? " approved" : " rejected"); }
          refresh();
          break;
        }
        case "handoff.claimed": showHandoff(ev.operator); break;
        case "handoff.resolved":
          onSession({ status: ev.resolution === "closed" ? "closed" : "active" });
          break;
        default: break;
      }
    }

    window.AgentOpsStream.follow(root.dataset.sessionWs, {
      open: function () { say("● live"); root.dataset.connected = "1"; },
      message: handle,
      lost: function () { root.dataset.connected = "0"; say("reconnecting…"); },
      refused: function (text, code) { root.dataset.connected = "0"; root.dataset.refused = String(code); say(text); },
    });

    if (list) { list.scrollTop = list.scrollHeight; }
  }

  // Ctrl/Cmd+Enter sends the message (the form is swapped by htmx, so listen on document).
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) { return; }
    const form = event.target.closest && event.target.closest("form[data-composer], form[data-reply]");
    if (form) { event.preventDefault(); form.requestSubmit(); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-convo]").forEach(init);
  });
})();
