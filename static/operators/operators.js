// The operator's conversation page: the `/` search of canned replies in the reply box, and
// private notes placed in the thread as they are added, by this operator or (told over
// /ws/inbox/ by notify.js) by another, and caught up after a reconnect.
//
// Canned replies come with the page (json_script "canned-replies"), their placeholders
// already filled in by the server for this conversation. Typing "/" (at the start or after a
// space) and words lists the replies whose shortcut, title or text hold every word; ↑/↓
// choose, Enter or Tab (or a click) replaces "/words" with the reply's text, Escape closes.
// The text goes into the textarea's value: it is never parsed as markup.
(function () {
  "use strict";

  const TRIGGER = /(^|\s)\/([^\n/]{0,60})$/;
  let replies = null;
  const state = { open: false, matches: [], active: 0, start: 0, end: 0 };

  function load() {
    if (replies === null) {
      const data = document.getElementById("canned-replies");
      try { replies = data ? JSON.parse(data.textContent) : []; } catch (e) { replies = []; }
    }
    return replies;
  }

  function listFor(box) { return box.parentElement.querySelector(".canned-list"); }
  function status(text) {
    const n = document.querySelector("[data-canned-status]");
    if (n) { n.textContent = text; }
  }

  function close(box) {
    const list = listFor(box);
    state.open = false;
    state.matches = [];
    if (list) { list.hidden = true; list.textContent = ""; }
    box.setAttribute("aria-expanded", "false");
    box.removeAttribute("aria-activedescendant");
  }

  function search(query) {
    const words = query.toLowerCase().split(/\s+/).filter(Boolean);
    const found = load().filter(function (r) {
      const hay = (r.shortcut + " " + r.title + " " + r.text).toLowerCase();
      return words.every(function (w) { return hay.indexOf(w) !== -1; });
    });
    if (words.length) {
      found.sort(function (a, b) {
        return Number(b.shortcut.indexOf(words[0]) === 0) - Number(a.shortcut.indexOf(words[0]) === 0);
      });
    }
    return found.slice(0, 8);
  }

  function highlight(box) {
    const list = listFor(box);
    list.querySelectorAll("li").forEach(function (li, i) {
      li.setAttribute("aria-selected", i === state.active ? "true" : "false");
      if (i === state.active) {
        box.setAttribute("aria-activedescendant", li.id);
        li.scrollIntoView({ block: "nearest" });
      }
    });
  }

  function render(box) {
    const list = listFor(box);
    list.textContent = "";
    state.matches.forEach(function (r, i) {
      const li = document.createElement("li");
      li.id = "canned-opt-" + i;
      li.setAttribute("role", "option");
      li.dataset.shortcut = r.shortcut;
      const head = document.createElement("strong");
      head.textContent = "/" + r.shortcut;
      const title = document.createElement("span");
      title.textContent = " " + r.title + " · " + r.scope;
      const text = document.createElement("span");
      text.className = "canned-text";
      text.textContent = r.text;
      li.append(head, title, text);
      list.append(li);
    });
    list.hidden = false;
    state.open = true;
    box.setAttribute("aria-expanded", "true");
    highlight(box);
    status(state.matches.length + " canned " + (state.matches.length === 1 ? "reply" : "replies"));
  }

  function update(box) {
    const caret = box.selectionStart;
    if (caret !== box.selectionEnd || !load().length) { close(box); return; }
    const m = TRIGGER.exec(box.value.slice(0, caret));
    if (!m) { close(box); return; }
    state.matches = search(m[2]);
    if (!state.matches.length) { close(box); status("No canned reply matches"); return; }
    state.start = caret - m[2].length - 1;
    state.end = caret;
    state.active = 0;
    render(box);
  }

  function insert(box, index) {
    const reply = state.matches[index];
    if (!reply) { return; }
    const value = box.value;
    box.value = value.slice(0, state.start) + reply.text + value.slice(state.end);
    const caret = state.start + reply.text.length;
    box.setSelectionRange(caret, caret);
    close(box);
    status("Inserted /" + reply.shortcut);
    box.focus();
  }

  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("textarea[data-canned]")) { update(event.target); }
  });

  document.addEventListener("keydown", function (event) {
    const box = event.target;
    if (!box.matches || !box.matches("textarea[data-canned]") || !state.open) { return; }
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const n = state.matches.length;
      state.active = (state.active + (event.key === "ArrowDown" ? 1 : n - 1)) % n;
      highlight(box);
    } else if ((event.key === "Enter" || event.key === "Tab") && !event.ctrlKey && !event.metaKey && !event.shiftKey) {
      event.preventDefault();
      insert(box, state.active);
    } else if (event.key === "Escape") {
      event.preventDefault();
      close(box);
    }
  });

  document.addEventListener("mousedown", function (event) {
    const option = event.target.closest && event.target.closest(".canned-list li");
    if (!option) { return; }
    event.preventDefault(); // keep the focus (and caret) in the reply box
    const box = option.closest(".canned-box").querySelector("textarea[data-canned]");
    insert(box, Array.prototype.indexOf.call(option.parentElement.children, option));
  });

  document.addEventListener("focusout", function (event) {
    if (event.target.matches && event.target.matches("textarea[data-canned]")) { close(event.target); }
  });

  // A note goes at the end of the thread, before the live messages that will follow it.
  function placeNote(li) {
    const list = document.querySelector("[data-messages]");
    if (!list || !li || list.querySelector("[data-note=\"" + li.dataset.note + "\"]")) { return; }
    list.insertBefore(li, list.querySelector("[data-empty]"));
    list.scrollTop = list.scrollHeight;
  }

  // This operator's note (htmx swapped the note form).
  document.addEventListener("htmx:afterSettle", function () {
    document.querySelectorAll("template[data-note-added]").forEach(function (tpl) {
      placeNote(tpl.content.firstElementChild);
      tpl.remove();
    });
  });

  // Another operator's notes: fetched (operators only) when the inbox socket says one was
  // added here, and on every (re)connection of that socket, for those added while away.
  // Once refused (the conversation went to another operator), the page stops asking.
  let notesRefused = false;
  function fetchNotes() {
    const head = document.querySelector("[data-notes-url]");
    if (!head || notesRefused) { return; }
    let after = 0;
    document.querySelectorAll("[data-messages] [data-note]").forEach(function (li) {
      after = Math.max(after, Number(li.dataset.note));
    });
    window.fetch(head.dataset.notesUrl + "?after=" + after, { credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 403) { notesRefused = true; }
        return r.ok && !r.redirected ? r.text() : ""; // not a login page
      })
      .then(function (html) {
        const tpl = document.createElement("template");
        tpl.innerHTML = html; // the server's own rendering: note text is escaped there
        Array.prototype.slice.call(tpl.content.children).forEach(function (el) {
          if (el.matches("li[data-note]")) { placeNote(el); }
        });
      });
  }
  document.addEventListener("agentops:inbox", function (event) {
    const message = event.detail || {};
    const head = document.querySelector("[data-session-id]");
    if (!head) { return; }
    if ((message.kind === "note" && message.session_id === head.dataset.sessionId) ||
        (message.kind === "unread" && message.initial)) {
      fetchNotes();
    }
  });
})();
