// Small Batch, on every page: times in the reader's own zone, the phone menu, and the total for
// the chosen quantity on the buy button. Every page works without this file.
(function () {
  "use strict";

  // <time datetime="2026-12-09T16:30:00Z" data-local="datetime|day|time">: the server wrote the
  // time in the account's zone (or UTC); show it in this browser's zone, and name the zone.
  function zoneName(date) {
    var parts = new Intl.DateTimeFormat("en-US", { timeZoneName: "short" }).formatToParts(date);
    for (var i = 0; i < parts.length; i++) {
      if (parts[i].type === "timeZoneName") return parts[i].value;
    }
    return "";
  }

  function pieces(date, options) {
    var out = {};
    new Intl.DateTimeFormat("en-GB", options).formatToParts(date).forEach(function (part) {
      out[part.type] = part.value;
    });
    return out;
  }

  function localText(date, style) {
    var clock = pieces(date, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    var time = clock.hour + ":" + clock.minute + " " + zoneName(date);
    if (style === "time") return time;
    var day = pieces(date, {
      day: "numeric",
      month: style === "day" ? "long" : "short",
      year: "numeric",
    });
    var text = day.day + " " + day.month + " " + day.year;
    return style === "day" ? text : text + ", " + time;
  }

  var zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (e) {
    zone = "";
  }
  Array.prototype.forEach.call(document.querySelectorAll("time[data-local]"), function (el) {
    var date = new Date(el.getAttribute("datetime"));
    if (isNaN(date.getTime())) return;
    try {
      el.textContent = localText(date, el.getAttribute("data-local"));
      if (zone) el.title = "In your time zone, " + zone.replace(/_/g, " ");
    } catch (e) {
      // An old browser without Intl.formatToParts keeps the server's text.
    }
  });
  var zoneNote = document.querySelector("[data-local-zone]");
  if (zoneNote && zone && document.querySelector("time[data-local]")) {
    zoneNote.querySelector("span").textContent = zone.replace(/_/g, " ");
    zoneNote.hidden = false;
  }

  // The phone menu: without scripts the links stay one scrollable row; with them, a button.
  var toggle = document.querySelector(".nav-toggle");
  var nav = document.getElementById("site-nav");
  if (toggle && nav) {
    document.querySelector(".site-header").classList.add("has-nav-toggle");
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      var open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      nav.classList.toggle("is-open", open);
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && nav.classList.contains("is-open")) {
        toggle.setAttribute("aria-expanded", "false");
        nav.classList.remove("is-open");
        toggle.focus();
      }
    });
  }

  // "Buy — $190.00" for the quantity chosen. Each <option> carries its total; a number field
  // (a generous limit) carries the price and how one unit is written, to write the total alike.
  function totalFor(field) {
    if (field.tagName === "SELECT") {
      var option = field.options[field.selectedIndex];
      return option ? option.getAttribute("data-total") : null;
    }
    var n = parseInt(field.value, 10);
    var price = parseInt(field.getAttribute("data-price"), 10);
    var one = field.getAttribute("data-price-one") || "";
    var number = one.match(/[\d,]+(\.(\d+))?/);
    if (!(n >= 1) || isNaN(price) || !number) return null;
    var places = number[2] ? number[2].length : 0;
    var text = ((price * n) / Math.pow(10, places)).toLocaleString("en-US", {
      minimumFractionDigits: places,
      maximumFractionDigits: places,
    });
    return one.replace(number[0], text);
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-total-for]"), function (field) {
    var button = document.getElementById(field.getAttribute("data-total-for"));
    var target = button && button.querySelector("[data-total]");
    if (!target) return;
    function update() {
      var total = totalFor(field);
      if (total) target.textContent = total;
    }
    field.addEventListener("change", update);
    field.addEventListener("input", update);
    update();
  });
})();
