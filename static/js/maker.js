// Maker console: live Markdown preview, self-refreshing live sales, time zone helper,
// confirm-before-remove and one-submit-only buttons. Every page works without this file.
(function () {
  "use strict";

  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrfToken = csrfMeta ? csrfMeta.getAttribute("content") : "";

  // --- Markdown preview: the server renders with the same sanitizer customers get.
  function setupPreview(textarea) {
    var target = document.getElementById(textarea.getAttribute("data-preview"));
    if (!target) return;
    var url = target.getAttribute("data-preview-url");
    var body = target.querySelector("[data-preview-body]");
    var status = target.querySelector("[data-preview-status]");
    var timer = null;
    var sent = 0;

    function render() {
      var mine = ++sent;
      if (status) status.textContent = "updating…";
      fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          "Accept": "application/json",
          "X-CSRFToken": csrfToken
        },
        body: JSON.stringify({ markdown: textarea.value })
      })
        .then(function (response) {
          return response.json().then(function (data) {
            return { ok: response.ok, data: data };
          });
        })
        .then(function (result) {
          if (mine !== sent) return; // a newer keystroke is on its way
          if (result.ok) {
            body.innerHTML = result.data.html || ""; // sanitized server-side by nh3
            if (status) status.textContent = "";
          } else if (status) {
            status.textContent = (result.data.error && result.data.error.message) || "preview unavailable";
          }
        })
        .catch(function () {
          if (mine === sent && status) status.textContent = "preview unavailable (offline?)";
        });
    }

    textarea.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(render, 300);
    });
  }

  document.querySelectorAll("textarea[data-preview]").forEach(setupPreview);

  // --- Live sales: poll the JSON endpoint and swap in the panel rendered by the server.
  var panel = document.querySelector("[data-live-url]");
  if (panel) {
    var liveUrl = panel.getAttribute("data-live-url");
    var interval = parseInt(panel.getAttribute("data-live-interval"), 10) || 5000;
    var statusLine = document.querySelector("[data-live-status]");
    var failures = 0;
    var pollTimer = null;

    function say(text) {
      if (statusLine) statusLine.textContent = text;
    }

    function schedule() {
      clearTimeout(pollTimer);
      var wait = Math.min(interval * Math.pow(2, failures), 60000);
      pollTimer = setTimeout(poll, wait);
    }

    function poll() {
      if (document.hidden) return schedule();
      fetch(liveUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) {
          var type = response.headers.get("Content-Type") || "";
          if (response.redirected || response.status === 401 || type.indexOf("json") === -1) {
            throw new Error("logged-out");
          }
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) {
          failures = 0;
          panel.innerHTML = data.html; // rendered and escaped by the server's template
          say("Updated " + new Date().toLocaleTimeString() + " · refreshes every " + interval / 1000 + " s");
          if (data.phase !== "closed") schedule();
          else say("The drop is closed. These are the final numbers.");
        })
        .catch(function (error) {
          if (error && error.message === "logged-out") {
            say("You've been logged out. Reload the page to log in again.");
            return; // polling a login page helps nobody
          }
          failures += 1;
          say("Can't reach the shop right now; trying again…");
          schedule();
        });
    }

    say("Refreshes every " + interval / 1000 + " s");
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) poll();
    });
    schedule();
  }

  // --- Settings: offer the browser's own time zone.
  var tzBox = document.querySelector("[data-tz-detect]");
  if (tzBox && window.Intl && Intl.DateTimeFormat) {
    var browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    var select = document.getElementById("timezone");
    var known = select && Array.prototype.some.call(select.options, function (o) {
      return o.value === browserZone;
    });
    if (known && select.value !== browserZone) {
      tzBox.querySelector("[data-tz-name]").textContent = browserZone.replace(/_/g, " ");
      tzBox.hidden = false;
      tzBox.querySelector("[data-tz-use]").addEventListener("click", function () {
        select.value = browserZone;
        tzBox.hidden = true;
        select.focus();
      });
    }
  }

  // --- Open/close steps: the time input only matters for "later".
  document.querySelectorAll(".choice-group").forEach(function (group) {
    var radios = group.querySelectorAll('input[type="radio"]');
    var detail = group.querySelector(".choice__detail");
    if (!detail) return;
    function sync() {
      var later = group.querySelector('input[type="radio"][value="later"]');
      detail.classList.toggle("choice__detail--off", !(later && later.checked));
    }
    radios.forEach(function (r) { r.addEventListener("change", sync); });
    detail.addEventListener("focusin", function () {
      var later = group.querySelector('input[type="radio"][value="later"]');
      if (later && !later.checked) { later.checked = true; sync(); }
    });
    sync();
  });

  // --- Ask before removing things that can't come back.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });

  // --- One submit per click: a double click sends one request (the server is exactly-once
  // anyway; this just spares a confusing second page).
  document.querySelectorAll("button[data-once]").forEach(function (button) {
    var form = button.form;
    if (!form) return;
    form.addEventListener("submit", function () {
      setTimeout(function () {
        button.disabled = true;
        button.textContent = "Working…";
      }, 0);
    });
  });
})();
