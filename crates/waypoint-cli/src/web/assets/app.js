// Waypoint's dashboard: live updates (Server-Sent Events from /api/v1/events, then the changed
// part of the page fetched again as HTML the server rendered and escaped) and the actions
// (JSON POSTs to /api/v1). No markup is ever built here from data.
"use strict";
(function () {
  var page = document.body.getAttribute("data-page");
  var live = document.getElementById("live");
  var pending = null;

  function say(text) { if (live) { live.textContent = text; } }

  function refresh() {
    var url = null, target = null;
    if (page === "plans") {
      url = "/fragments/plans" + location.search;
      target = document.getElementById("plans-live");
    } else if (page === "plan") {
      target = document.getElementById("plan-live");
      url = "/fragments/plans/" + encodeURIComponent(target.getAttribute("data-plan-id"));
    } else if (page === "queues") {
      url = "/fragments/queues";
      target = document.getElementById("queues-live");
    }
    if (!url || !target) { return; }
    fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.text();
    }).then(function (html) {
      var open = Array.prototype.map.call(target.querySelectorAll("details[open][id]"), function (d) { return d.id; });
      var message = document.getElementById("action-message");
      var kept = message ? { text: message.textContent, cls: message.className } : null;
      var focused = document.activeElement && document.activeElement.closest("form.action");
      var focusedAction = focused ? focused.getAttribute("data-action") : null;
      target.innerHTML = html; // rendered and escaped by the server's templates
      open.forEach(function (id) { var d = document.getElementById(id); if (d) { d.open = true; } });
      var after = document.getElementById("action-message");
      if (after && kept) { after.textContent = kept.text; after.className = kept.cls; }
      if (focusedAction) {
        var button = target.querySelector('form.action[data-action="' + focusedAction + '"] button');
        if (button) { button.focus(); }
      }
      say("Live updates: on · updated " + new Date().toLocaleTimeString());
    }).catch(function (e) { say("Live updates: could not refresh (" + e.message + ")"); });
  }

  function schedule() {
    if (pending) { return; }
    pending = setTimeout(function () { pending = null; refresh(); }, 250);
  }

  if (window.EventSource && (page === "plans" || page === "plan" || page === "queues")) {
    var source = new EventSource("/api/v1/events");
    source.addEventListener("open", function () { say("Live updates: on"); });
    source.addEventListener("error", function () { say("Live updates: reconnecting…"); });
    source.addEventListener("plan", function (event) {
      if (page === "plan") {
        var id = document.getElementById("plan-live").getAttribute("data-plan-id");
        var changed = null;
        try { changed = JSON.parse(event.data).plan_id; } catch (e) { return; }
        if (changed !== id) { return; }
      }
      schedule();
    });
  } else {
    say("Live updates: off (reload to see changes)");
  }

  function show(kind, text) {
    var message = document.getElementById("action-message");
    if (!message) { return; }
    message.className = kind;
    message.textContent = text;
    message.focus();
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("action")) { return; }
    event.preventDefault();
    var action = form.getAttribute("data-action");
    var id = form.getAttribute("data-plan-id");
    var body = {};
    if (action === "cancel") {
      var reason = form.elements.reason.value.trim();
      if (reason) { body.reason = reason; }
    } else if (action === "fork") {
      body.from_step = parseInt(form.elements.from_step.value, 10);
    } else if (action === "approve") {
      var comment = form.elements.comment.value.trim();
      if (comment) { body.comment = comment; }
    } else if (action === "reject") {
      body.reason = form.elements.reason.value.trim();
    }
    var buttons = form.querySelectorAll("button");
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    fetch("/api/v1/plans/" + encodeURIComponent(id) + "/" + action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (json) { return { ok: response.ok, json: json }; });
    }).then(function (result) {
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
      if (!result.ok) {
        var error = result.json && result.json.error;
        show("refused", error ? error.message : "the server refused");
        return;
      }
      if (action === "fork") {
        location.href = "/plans/" + encodeURIComponent(result.json.plan_id);
        return;
      }
      show("done", "plan " + result.json.plan_id + " is now " + result.json.status);
      refresh();
    }).catch(function (e) {
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
      show("refused", "the server could not be reached: " + e.message);
    });
  });
})();
