// slammesh console: live updates over Server-Sent Events. Data from the
// server is put on the page with textContent only; the one innerHTML is a
// fragment of the server's own html/template page, escaped there.
"use strict";

function human(ms) {
  if (ms < 0) ms = 0;
  if (ms < 1000) return ms + "ms";
  var s = ms / 1000;
  if (s < 60) return s.toFixed(1) + "s";
  var m = Math.floor(s / 60);
  if (m < 60) return m + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
  return Math.floor(m / 60) + "h" + String(m % 60).padStart(2, "0") + "m";
}

function cell(tr, cls, text) {
  var td = document.createElement("td");
  td.className = cls;
  td.textContent = text;
  tr.appendChild(td);
  return td;
}

function fillRow(tr, r) {
  tr.textContent = "";
  tr.dataset.id = r.id;
  tr.dataset.created = r.created_ms;
  tr.dataset.ended = r.ended_ms || 0;
  tr.dataset.state = r.state;
  var id = cell(tr, "id", "");
  var a = document.createElement("a");
  a.href = "/missions/" + encodeURIComponent(r.id);
  a.textContent = r.id;
  id.appendChild(a);
  var st = cell(tr, "state", "");
  var badge = document.createElement("span");
  badge.className = "badge s-" + r.state;
  badge.textContent = r.state;
  st.appendChild(badge);
  cell(tr, "agents", String(r.agents));
  cell(tr, "age", "");
  cell(tr, "duration", "");
  cell(tr, "step", r.step || "");
  cell(tr, "error", r.error || "");
  tick(tr, Date.now());
}

function tick(tr, now) {
  var created = Number(tr.dataset.created), ended = Number(tr.dataset.ended);
  var age = tr.querySelector(".age"), dur = tr.querySelector(".duration");
  if (age) age.textContent = human(now - created);
  if (dur) dur.textContent = human((ended > 0 ? ended : now) - created);
}

function liveList(table) {
  var body = table.tBodies[0];
  var filter = table.dataset.filter;
  var status = document.getElementById("live-status");
  var es = new EventSource("/events/missions");
  es.onopen = function () { status.textContent = "live"; status.className = "live on"; };
  es.onerror = function () { status.textContent = "reconnecting…"; status.className = "live"; };
  es.addEventListener("rows", function (msg) {
    JSON.parse(msg.data).forEach(function (r) {
      var tr = null;
      for (var i = 0; i < body.rows.length; i++) {
        if (body.rows[i].dataset.id === r.id) { tr = body.rows[i]; break; }
      }
      if (filter && r.state !== filter) {
        if (tr) tr.remove();
        return;
      }
      if (!tr) {
        tr = document.createElement("tr");
        var before = null;
        for (var j = 0; j < body.rows.length; j++) {
          if (Number(body.rows[j].dataset.created) < r.created_ms) { before = body.rows[j]; break; }
        }
        body.insertBefore(tr, before);
        var empty = document.getElementById("empty");
        if (empty) empty.remove();
      }
      fillRow(tr, r);
    });
  });
  // Missions whose data expired or was deleted stay listed, marked so.
  es.addEventListener("gone", function (msg) {
    JSON.parse(msg.data).forEach(function (id) {
      for (var i = 0; i < body.rows.length; i++) {
        var tr = body.rows[i];
        if (tr.dataset.id !== id) continue;
        tr.dataset.state = "GONE";
        tr.classList.add("gone");
        var badge = tr.querySelector(".state .badge") || tr.querySelector(".state");
        if (badge) { badge.textContent = "GONE"; badge.className = badge.className.replace(/\bs-\S+/, "s-GONE"); }
        var err = tr.querySelector(".error");
        if (err) err.textContent = "data expired or deleted";
        if (!tr.dataset.ended || tr.dataset.ended === "0") tr.dataset.ended = String(Date.now());
      }
    });
  });
  setInterval(function () {
    var now = Date.now();
    for (var i = 0; i < body.rows.length; i++) tick(body.rows[i], now);
  }, 1000);
  var sel = document.getElementById("state-filter");
  if (sel) sel.addEventListener("change", function () { sel.form.submit(); });
}

function liveMission(live) {
  var id = live.dataset.id;
  var feed = document.getElementById("feed");
  var pending = null;
  // A mission's last event can reach the page before its record reads as
  // ended (a refresh racing the final write): after a terminal event, the
  // live section is refreshed again until it shows that state (bounded).
  var terminal = { "mission.completed": "COMPLETED", "mission.compensated": "COMPENSATED", "mission.failed": "FAILED" };
  var want = null, tries = 0;
  // Refreshes can overlap on a slow server: a reply older than the last
  // one applied is dropped, so a stale state never overwrites a newer one.
  var sent = 0, applied = 0;
  function refresh() {
    pending = null;
    var mine = ++sent;
    fetch("/missions/" + encodeURIComponent(id) + "?part=live", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (mine < applied) return;
        applied = mine;
        if (html !== null) live.innerHTML = html;
        var st = document.getElementById("mission-state");
        if (want && st && st.textContent !== want && tries++ < 20 && !pending) pending = setTimeout(refresh, 500);
      })
      .catch(function () {});
  }
  // The page itself can hold that race: its record read before the last
  // write and its feed, read after, ending with the terminal event, which
  // the event source (starting after it) will not send again.
  var last = feed.lastElementChild;
  var lastType = last ? last.className.replace(/^t-/, "").replace("-", ".") : "";
  var shown = document.getElementById("mission-state");
  if (terminal[lastType] && shown && shown.textContent !== terminal[lastType]) {
    want = terminal[lastType];
    pending = setTimeout(refresh, 250);
  }
  var status = document.getElementById("feed-status");
  var es = new EventSource("/events/missions/" + encodeURIComponent(id) + "?after=" + encodeURIComponent(live.dataset.after));
  es.onopen = function () { status.textContent = "live"; status.className = "live on"; };
  es.onerror = function () { if (es.readyState !== EventSource.CLOSED) { status.textContent = "reconnecting…"; status.className = "live"; } };
  // The server could not read the events (Redis down): it retries, and says so.
  es.addEventListener("problem", function (msg) {
    status.textContent = JSON.parse(msg.data) + "…";
    status.className = "live problem";
  });
  es.addEventListener("ok", function () { status.textContent = "live"; status.className = "live on"; });
  // The mission was deleted, or its data expired, while the page was open.
  es.addEventListener("gone", function (msg) {
    es.close();
    status.textContent = "GONE: " + JSON.parse(msg.data);
    status.className = "live gone";
  });
  es.addEventListener("ev", function (msg) {
    if (status.className !== "live on") { status.textContent = "live"; status.className = "live on"; }
    var e = JSON.parse(msg.data);
    if (feed.querySelector('tr[data-id="' + CSS.escape(e.id) + '"]')) return;
    var tr = document.createElement("tr");
    tr.dataset.id = e.id;
    tr.className = "t-" + e.type.replace(".", "-");
    var msgText = e.message + (e.type === "step.progress" ? " " + Math.round(100 * e.progress) + "%" : "");
    [e.time, e.type, e.step, e.service, e.attempt ? String(e.attempt) : "", msgText, e.code, e.reason].forEach(function (t) {
      var td = document.createElement("td");
      td.textContent = t;
      tr.appendChild(td);
    });
    feed.appendChild(tr);
    if (terminal[e.type]) { want = terminal[e.type]; tries = 0; }
    if (e.type !== "step.progress" && !pending) pending = setTimeout(refresh, 250);
  });
}

document.addEventListener("DOMContentLoaded", function () {
  var table = document.getElementById("missions");
  if (table) liveList(table);
  var live = document.getElementById("live");
  if (live) liveMission(live);
});
