// Small Batch: live numbers without a reload. Every page works without this file; it only
// keeps countdowns ticking and "38 of 240 left" current while a drop is on sale.
(function () {
  "use strict";

  var POLL_MS = 5000;
  var serverNow = Date.parse(document.body.getAttribute("data-now") || "");
  // How far this device's clock is from the shop's, so countdowns end on the shop's second.
  var skew = isNaN(serverNow) ? 0 : serverNow - Date.now();

  function now() {
    return Date.now() + skew;
  }

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }

  function formatRemaining(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var days = Math.floor(s / 86400);
    var hours = Math.floor((s % 86400) / 3600);
    var minutes = Math.floor((s % 3600) / 60);
    var seconds = s % 60;
    if (days >= 2) return days + " days" + (hours ? " " + hours + " h" : "");
    if (days >= 1 || hours >= 1) return (days * 24 + hours) + " h " + pad(minutes) + " min";
    if (minutes >= 1) return minutes + " min " + pad(seconds) + " s";
    return seconds + " s";
  }

  // Countdowns: <span data-countdown="ISO" data-prefix="Closes in " data-done="Closed">
  var countdowns = Array.prototype.slice.call(document.querySelectorAll("[data-countdown]"));
  var reloadScheduled = false;

  function tick() {
    countdowns.forEach(function (el) {
      var target = Date.parse(el.getAttribute("data-countdown"));
      if (isNaN(target)) return;
      var left = target - now();
      if (left > 0) {
        el.textContent = (el.getAttribute("data-prefix") || "") + formatRemaining(left);
      } else {
        el.textContent = el.getAttribute("data-done") || "";
        if (el.hasAttribute("data-reload-at-zero") && !reloadScheduled && left > -5000) {
          // The drop just opened or closed: the server decides what the page shows now.
          reloadScheduled = true;
          window.setTimeout(function () { window.location.reload(); }, 1200);
        }
      }
    });
  }

  if (countdowns.length) {
    tick();
    window.setInterval(tick, 1000);
  }

  // Stock: containers with data-stock-url poll the drop's JSON and update [data-left-for].
  function updateStock(container, data) {
    var phase = container.getAttribute("data-phase");
    if (data.phase && phase && data.phase !== phase && !reloadScheduled) {
      reloadScheduled = true;
      window.location.reload();
      return;
    }
    (data.batches || []).forEach(function (batch) {
      container.querySelectorAll('[data-left-for="' + batch.id + '"]').forEach(function (el) {
        var text = batch.remaining > 0
          ? batch.remaining + " of " + batch.edition_size + " left"
          : "All taken for now";
        if (el.textContent !== text) {
          el.textContent = text;
          el.classList.add("is-updated");
          window.setTimeout(function () { el.classList.remove("is-updated"); }, 1200);
        }
        var stock = el.closest(".stock");
        if (stock) stock.classList.toggle("stock--out", batch.remaining <= 0);
      });
      container.querySelectorAll('[data-bar-for="' + batch.id + '"]').forEach(function (bar) {
        bar.value = batch.remaining;
      });
    });
  }

  function poll(container) {
    var url = container.getAttribute("data-stock-url");
    if (document.hidden) return;
    // Without cookies: the numbers are everyone's, so a proxy's micro-cache and the shop's fast
    // path (shop/fast_path.py) answer a signed-in visitor's poll as cheaply as anyone's.
    window.fetch(url, { headers: { Accept: "application/json" }, credentials: "omit" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) return;
        var fresh = Date.parse(data.now);
        if (!isNaN(fresh)) skew = fresh - Date.now();
        updateStock(container, data);
      })
      .catch(function () { /* offline for a moment: try again next time */ });
  }

  document.querySelectorAll("[data-stock-url]").forEach(function (container) {
    if (container.getAttribute("data-phase") !== "live") return;
    window.setInterval(function () { poll(container); }, POLL_MS);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) poll(container);
    });
  });

  // Print buttons stay hidden without JavaScript (the browser's own Print works anyway).
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { window.print(); });
  });
})();
