// The conversation view (console and the operator's claimed view): follows
// /ws/sessions/<id>/, streams the answer token by token and shows tool calls inline.
// Everything from the model, tools or people is set with textContent, never as HTML.
// A reconnect (dropped connection, reload) re-syncs from the snapshot; messages are
// deduplicated by their seq, so nothing shows twice and nothing is lost.
(function () {
  "use strict";

  const LABELS = {
    queued: "Queued", running: "Running", waiting: "Waiting", handed_off: "Handed off",
    succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled",
  };
  const FINISHED = ["handed_off", "succeeded", "failed", "cancelled"];
  const ACTIVE = ["queued", "running", "waiting"];

  function make(tag, className, text) {
    const node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  // As the pages' `ms` filter writes a duration: "850 ms", "2.40 s", "3 min 5 s".
  function formatMs(value) {
    const v = Number(value);
    if (v < 1000) { return Math.round(v) + " ms"; }
    if (v < 60000) { return (v / 1000).toFixed(2) + " s"; }
    const seconds = Math.floor(v / 1000);
    return Math.floor(seconds / 60) + " min " + (seconds % 60) + " s";
  }

  function pretty(args) {
    if (typeof args !== "string") { return JSON.stringify(args, null, 2); }
    try { return JSON.stringify(JSON.parse(args), null, 2); } catch (e) { return args; }
  }

  function init(root) {
    const list = root.querySelector("[data-messages]");
    const streamBox = root.querySelector("[data-streaming]");
    const seen = new Set();
    const started = {};
    let streaming = null;
    let backoff = 500;
    let refreshTimer = null;

    root.querySelectorAll("[data-seq]").forEach(function (n) { seen.add(Number(n.dataset.seq)); });
    root.querySelectorAll("[data-result-seq]").forEach(function (n) { seen.add(Number(n.dataset.resultSeq)); });

    function q(sel) { return root.querySelector(sel); }
    function say(text) { const n = q("[data-convo-live]"); if (n) { n.textContent = text; } }

    function nearBottom() {
      return list.scrollHeight - list.scrollTop - list.clientHeight < 120;
    }
    function stickToBottom(was) { if (was) { list.scrollTop = list.scrollHeight; } }

    function roleLabel(m) {
      if (m.role === "user") { return root.dataset.userLabel || "User"; }
      if (m.role === "assistant") { return root.dataset.agentLabel || "Agent"; }
      if (m.role === "operator") { return "Operator · " + (m.author || "?"); }
      return m.role.charAt(0).toUpperCase() + m.role.slice(1);
    }

    function findCall(callId) {
      const all = root.querySelectorAll("details.toolcall");
      for (let i = 0; i < all.length; i++) { if (all[i].dataset.callId === callId) { return all[i]; } }
      return null;
    }

    function setCallStatus(details, status, durationMs) {
      const badge = details.querySelector("[data-tc-status]");
      badge.className = "badge status-" + status;
      badge.textContent = status;
      if (durationMs !== null && durationMs !== undefined) {
        details.querySelector("[data-tc-duration]").textContent = formatMs(durationMs);
      }
    }

    function toolDetails(callId, name, args, status) {
      const details = make("details", "toolcall");
      details.dataset.callId = callId;
      const summary = make("summary");
      const icon = make("span", "tool-icon", "⚙");
      icon.setAttribute("aria-hidden", "true");
      summary.append(icon, " ", make("span", "tool-name", name), " ");
      const badge = make("span", "badge status-" + status, status);
      badge.dataset.tcStatus = "";
      const duration = make("span", "muted");
      duration.dataset.tcDuration = "";
      summary.append(badge, " ", duration);
      details.append(summary, make("div", "tc-label", "Arguments"));
      const pre = make("pre", "", pretty(args));
      pre.dataset.tcArgs = "";
      const result = make("pre", "", "…");
      result.dataset.tcResult = "";
      details.append(pre, make("div", "tc-label", "Result"), result);
      return details;
    }

    function setResult(details, content, seq) {
      details.querySelector("[data-tc-result]").textContent = content;
      if (seq) { details.dataset.resultSeq = String(seq); }
    }

    function insertBySeq(li, seq) {
      const items = list.querySelectorAll("li[data-seq]");
      for (let i = 0; i < items.length; i++) {
        if (Number(items[i].dataset.seq) > seq) { list.insertBefore(li, items[i]); return; }
      }
      const empty = list.querySelector("[data-empty]");
      list.insertBefore(li, empty);
    }

    function clearStreaming() {
      if (streaming) { streaming.node.remove(); streaming = null; }
    }

    function renderMessage(m) {
      if (seen.has(m.seq)) { return; }
      const was = nearBottom();
      if (m.role === "tool" && m.tool_call_id) {
        const details = findCall(m.tool_call_id);
        if (details) {
          seen.add(m.seq);
          setResult(details, m.content, m.seq);
          const badge = details.querySelector("[data-tc-status]");
          if (badge.textContent === "running" || badge.textContent === "started") {
            setCallStatus(details, m.content.indexOf("Error") === 0 ? "failed" : "succeeded", null);
          }
          scheduleRefresh();
          return;
        }
      }
      seen.add(m.seq);
      if (m.role === "assistant" && streaming && streaming.runId === m.run_id && m.content) { clearStreaming(); }
      const li = make("li", "msg msg-" + m.role);
      li.dataset.seq = String(m.seq);
      const meta = make("div", "msg-meta");
      meta.append(make("span", "msg-role", roleLabel(m)), " ");
      if (m.created_at) {
        const time = make("time", "", new Date(m.created_at).toLocaleTimeString([], { hour12: false }));
        time.setAttribute("datetime", m.created_at);
        meta.append(time);
      }
      li.append(meta);
      if (m.content) { li.append(make("div", "msg-body", m.content)); }
      (m.tool_calls || []).forEach(function (tc) {
        const fn = tc["function"] || {};
        let details = findCall(tc.id);
        if (details) {
          const holder = details.closest("li[data-pending]");
          li.append(details);
          if (holder && !holder.querySelector("details")) { holder.remove(); }
        } else {
          details = toolDetails(tc.id, fn.name || "?", fn.arguments || "", "started");
          li.append(details);
        }
      });
      insertBySeq(li, m.seq);
      const empty = list.querySelector("[data-empty]");
      if (empty) { empty.hidden = true; }
      stickToBottom(was);
    }

    function onToken(ev) {
      const was = nearBottom();
      if (!streaming || streaming.runId !== ev.run_id) {
        clearStreaming();
        const node = make("div", "msg msg-assistant streaming");
        const meta = make("div", "msg-meta");
        meta.append(make("span", "msg-role", root.dataset.agentLabel || "Agent"), " ", make("span", "muted", "typing…"));
        const body = make("div", "msg-body", "");
        body.dataset.streamBody = "";
        node.append(meta, body);
        streamBox.append(node);
        streaming = { runId: ev.run_id, node: node, body: body };
      }
      streaming.body.textContent += ev.text;
      stickToBottom(was);
    }

    function onToolCall(ev) {
      started[ev.call_id] = performance.now();
      let details = findCall(ev.call_id);
      if (!details) {
        const holder = make("li", "msg msg-assistant");
        holder.dataset.pending = "";
        details = toolDetails(ev.call_id, ev.tool, ev.arguments, "running");
        holder.append(details);
        list.insertBefore(holder, list.querySelector("[data-empty]"));
      }
      setCallStatus(details, "running", null);
    }

    function onToolResult(ev) {
      const details = findCall(ev.call_id);
      if (!details) { return; }
      setResult(details, ev.content, null);
      const took = started[ev.call_id] ? performance.now() - started[ev.call_id] : null;
      setCallStatus(details, String(ev.content).indexOf("Error") === 0 ? "failed" : "succeeded", took);
      scheduleRefresh();
    }

    // The stored status and duration of each tool call are the truth; fetch them once the
    // burst of events settles.
    function scheduleRefresh() {
      if (refreshTimer) { return; }
      refreshTimer = window.setTimeout(function () {
        refreshTimer = null;
        fetch(root.dataset.toolCallsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(function (data) {
            if (!data) { return; }
            Object.keys(data.tool_calls).forEach(function (callId) {
              const details = findCall(callId);
              const s = data.tool_calls[callId];
              if (details) { setCallStatus(details, s.status, s.duration_ms); }
            });
          })
          .catch(function () { /* the next event retries */ });
      }, 400);
    }

    function setRun(ev) {
      if (!ev) { return; }
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
      if (FINISHED.indexOf(ev.status) !== -1) { clearStreaming(); scheduleRefresh(); }
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
          onSession(ev.session);
          ev.messages.forEach(renderMessage);
          setRun(ev.run);
          scheduleRefresh();
          root.dataset.synced = String(Number(root.dataset.synced || 0) + 1);
          break;
        case "token": onToken(ev); break;
        case "message": renderMessage(ev.message); break;
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
          break;
        }
        case "handoff.claimed": showHandoff(ev.operator); break;
        case "handoff.resolved":
          onSession({ status: ev.resolution === "closed" ? "closed" : "active" });
          break;
        default: break;
      }
    }

    function open() {
      const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      const ws = new WebSocket(scheme + window.location.host + root.dataset.sessionWs);
      ws.addEventListener("open", function () { backoff = 500; say("● live"); root.dataset.connected = "1"; });
      ws.addEventListener("message", function (event) {
        let ev;
        try { ev = JSON.parse(event.data); } catch (e) { return; }
        handle(ev);
      });
      ws.addEventListener("close", function (event) {
        root.dataset.connected = "0";
        if (event.code === 4401 || event.code === 4403) { say("not allowed to follow this conversation"); return; }
        if (event.code === 4404) { say("this session no longer exists"); return; }
        say("reconnecting…");
        window.setTimeout(open, backoff);
        backoff = Math.min(backoff * 2, 10000);
      });
    }

    if (list) { list.scrollTop = list.scrollHeight; }
    open();
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
