// An operator's unread count, on every page: /ws/inbox/ sends it when the socket opens (and
// again after each reconnect, read from the database, so nothing missed while away is lost)
// and whenever it changes. It shows in the title and beside "Queue" in the navigation. When
// it grows, a browser notification (only once the operator granted it with the button on
// the queue page: never asked on page load) and, if the operator turned it on, a sound.
// The same socket carries the operator's presence (opening it brings them back online if
// that is what they chose): the presence switch and the "you are offline" banner follow it.
(function () {
  "use strict";

  let last = null;
  let sound = false;
  let baseTitle = "";

  function csrf() {
    try { return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || ""; } catch (e) { return ""; }
  }

  function post(url, body) {
    return window.fetch(url, {
      method: "POST",
      headers: { "X-CSRFToken": csrf(), "Content-Type": "application/x-www-form-urlencoded" },
      body: body || "",
      credentials: "same-origin",
    });
  }

  function show(counts) {
    const total = Number(counts.total || 0);
    document.title = (total ? "(" + total + ") " : "") + baseTitle;
    document.querySelectorAll("[data-unread-count]").forEach(function (badge) {
      badge.textContent = String(total);
      badge.hidden = total === 0;
      badge.title = counts.handoffs + " new handoff(s), " + counts.messages + " new message(s)";
    });
  }

  function alertOperator(counts, previous) {
    const body = counts.handoffs > previous.handoffs
      ? "A handoff is waiting in your queue."
      : "An end user wrote in one of your conversations.";
    if ("Notification" in window && window.Notification.permission === "granted") {
      try { new window.Notification("AgentOps · " + counts.total + " unread", { body: body, tag: "agentops-unread" }); } catch (e) { /* no notifications in this context */ }
    }
    if (sound) {
      const audio = new window.Audio(document.querySelector("[data-sound-src]").dataset.soundSrc);
      audio.play().catch(function () { /* the browser wants a click on the page first */ });
    }
    document.body.dataset.notified = String(Number(document.body.dataset.notified || 0) + 1);
  }

  function markRead() {
    const header = document.querySelector("[data-handoff-read-url]");
    if (header && document.visibilityState === "visible") { post(header.dataset.handoffReadUrl); }
  }

  function presence(value) {
    document.querySelectorAll("[data-presence-banner]").forEach(function (banner) {
      banner.hidden = value === "online";
      banner.querySelector("[data-presence-word]").textContent = value;
    });
    document.querySelectorAll(".presence-switch").forEach(function (form) {
      form.dataset.presence = value;
      form.querySelector("select").value = value;
      form.querySelector(".presence-dot").className = "presence-dot presence-" + value;
    });
  }

  function onMessage(message) {
    // Other scripts of the page (the conversation page's notes) follow the same socket.
    document.dispatchEvent(new window.CustomEvent("agentops:inbox", { detail: message }));
    if (message.presence) { presence(message.presence); }
    if (message.kind !== "unread") { return; }
    sound = Boolean(message.sound);
    const previous = last;
    last = message;
    show(message);
    if (previous && message.total > previous.total) {
      alertOperator(message, previous);
      if (message.messages > previous.messages) { markRead(); } // the page shows them
    }
  }

  function controls() {
    const box = document.querySelector("[data-notify-controls]");
    if (!box) { return; }
    const button = box.querySelector("[data-notify-permission]");
    const state = box.querySelector("[data-notify-state]");
    const toggle = box.querySelector("[data-notify-sound]");
    function paint() {
      if (!("Notification" in window)) { state.textContent = "this browser has no notifications"; return; }
      const permission = window.Notification.permission;
      button.hidden = permission !== "default";
      state.textContent = permission === "granted" ? "browser notifications on" : permission === "denied" ? "browser notifications blocked (allow them in the site settings)" : "";
    }
    button.addEventListener("click", function () {
      window.Notification.requestPermission().then(paint, paint);
    });
    toggle.addEventListener("change", function () {
      post(box.dataset.soundUrl, "sound=" + (toggle.checked ? "on" : "off")).then(function (r) {
        if (r.ok) { sound = toggle.checked; } else { toggle.checked = !toggle.checked; }
      });
    });
    paint();
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!document.querySelector("[data-unread-count]") || !window.AgentOpsStream) { return; }
    baseTitle = document.title.replace(/^\(\d+\) /, "");
    controls();
    document.addEventListener("visibilitychange", function () {
      if (last && last.messages) { markRead(); }
    });
    window.AgentOpsStream.follow("/ws/inbox/", {
      open: function () { document.body.dataset.inbox = "live"; },
      message: onMessage,
      lost: function () { document.body.dataset.inbox = "reconnecting"; },
      refused: function () { document.body.dataset.inbox = "refused"; },
    });
  });
})();
