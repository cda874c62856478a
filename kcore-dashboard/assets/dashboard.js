// kcore dashboard: live updates only. Every page works without this script; with it,
// events arrive as they happen (server-sent events from /events/stream, which follows
// kcored's WatchEvents) and a live page's <main> is fetched again and swapped in.
(function () {
  "use strict";
  var live = document.body.getAttribute("data-live") === "1";
  var state = document.getElementById("live-state");
  var pending = null;

  function refresh() {
    pending = null;
    fetch(location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        var main = document.getElementById("main");
        if (fresh && main) { main.innerHTML = fresh.innerHTML; }
      })
      .catch(function () {});
  }

  function soon(ms) {
    if (live && !pending) { pending = setTimeout(refresh, ms); }
  }

  if (!window.EventSource) { return; }
  var es = new EventSource("/events/stream");
  es.addEventListener("open", function () { if (state) { state.textContent = "● live"; } });
  es.addEventListener("error", function () { if (state) { state.textContent = "○ reconnecting"; } });
  es.addEventListener("kcore", function (m) {
    var ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    var list = document.getElementById("event-list");
    if (list && !live) {
      var empty = list.querySelector(".empty");
      if (empty) { empty.remove(); }
      var tpl = document.createElement("template");
      tpl.innerHTML = ev.html;
      var item = tpl.content.firstElementChild;
      if (item) { item.classList.add("new"); list.insertBefore(item, list.firstChild); }
    }
    soon(500);
  });
  // Figures (CPU, memory, ages) move without events too.
  if (live) { setInterval(function () { soon(0); }, 10000); }
})();
