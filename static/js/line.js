// Small Batch: the waiting room's line, told at once. The queue page reloads itself (meta
// refresh) and works without this file. With it, the page also reads the drop's live stock
// JSON every second — without cookies, so a proxy's micro-cache answers the whole line — and
// says "Sold out" in place the moment every unit is sold for good (no request: a line of
// thousands told at once must not all ask the shop at once). Held units can come back, so
// "none free right now" never ends the wait; turns still come with the reload.
(function () {
  "use strict";

  var POLL_MS = 1000;
  var line = document.querySelector("[data-line-stock-url]");
  if (!line || !window.fetch) return;
  var stockUrl = line.getAttribute("data-line-stock-url");
  var lineUrl = line.getAttribute("data-line-url");
  var done = false;
  var timer = null;

  function stop() {
    done = true;
    if (timer !== null) window.clearInterval(timer);
  }

  function tellSoldOut() {
    var template = document.getElementById("line-sold-out");
    if (!template) {
      window.location.replace(lineUrl); // the server's sold-out page instead
      return;
    }
    var told = template.content.firstElementChild.cloneNode(true);
    line.replaceWith(told);
    document.title = template.getAttribute("data-title") || document.title;
    var heading = told.querySelector("h1");
    if (heading) heading.focus();
  }

  function check(data) {
    if (data.sold_out_for_good) {
      stop();
      tellSoldOut();
    }
  }

  function poll() {
    if (done || document.hidden) return;
    window.fetch(stockUrl, {
      headers: { Accept: "application/json" },
      credentials: "omit",
      cache: "no-cache"
    })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data && !done) check(data); })
      .catch(function () { /* offline for a moment: the next poll or the reload will do */ });
  }

  timer = window.setInterval(poll, POLL_MS);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) poll();
  });
})();
