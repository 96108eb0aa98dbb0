(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("lps-data").textContent);
  var tip = document.getElementById("lps-tip");
  var current = null;
  function num(x) {
    if (typeof x === "number") { return x; }
    if (x === "-inf") { return -Infinity; }
    if (x === "inf") { return Infinity; }
    return NaN;
  }
  function fmtP(p) {
    if (isNaN(p)) { return "n/a"; }
    if (p === 0) { return "0"; }
    if (p >= 0.001) { return p.toFixed(4); }
    return p.toExponential(2);
  }
  function fmtLp(lp) {
    if (lp === -Infinity) { return "-inf"; }
    if (isNaN(lp)) { return "n/a"; }
    return lp.toFixed(5);
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function show(target) {
    var holder = target.closest("[data-call]");
    if (!holder) { return; }
    var call = data.calls[Number(holder.getAttribute("data-call"))];
    var rows = call && (holder.getAttribute("data-stream") === "refusal" ? call.refusal : call.tokens);
    var row = rows && rows[Number(target.getAttribute("data-k"))];
    if (!row) { return; }
    // Token texts come as quoted literals, made printable by the page's generator.
    var index = row[0], lp = num(row[1]), name = row[2], ms = row[3], alts = row[4];
    var p = Math.exp(lp);
    tip.textContent = "";
    var label = name === null ? "  (text not captured)" : "  " + name;
    tip.appendChild(el("div", "t", "#" + index + label));
    var line = "p " + fmtP(p) + "  \u00b7  logprob " + fmtLp(lp);
    if (ms !== null) { line += "  \u00b7  +" + ms.toFixed(1) + " ms"; }
    if (p < call.threshold) { line += "  \u00b7  low confidence"; }
    tip.appendChild(el("div", null, line));
    if (alts.length) {
      tip.appendChild(el("div", "h", "top alternatives"));
      for (var j = 0; j < alts.length; j++) {
        var altName = alts[j][0], altLp = num(alts[j][1]), altP = Math.exp(altLp);
        var chosen = (name !== null && altName === name) || (name === null && altLp === lp);
        var r = el("div", chosen ? "row chosen" : "row");
        var altLabel = altName === null ? "#" + (j + 1) : altName;
        r.appendChild(el("span", "a", altLabel + (chosen ? " \u2713" : "")));
        r.appendChild(el("span", null, fmtP(altP)));
        var bar = el("span", "bar");
        bar.style.width = Math.max(1, Math.round(60 * (isNaN(altP) ? 0 : altP))) + "px";
        r.appendChild(bar);
        tip.appendChild(r);
      }
    } else {
      tip.appendChild(el("div", "h", "no alternatives recorded (top_logprobs = 0)"));
    }
    tip.hidden = false;
    var rect = target.getBoundingClientRect();
    var left = rect.left + window.scrollX;
    var maxLeft = window.scrollX + document.documentElement.clientWidth - tip.offsetWidth - 8;
    tip.style.left = Math.max(window.scrollX + 4, Math.min(left, maxLeft)) + "px";
    tip.style.top = (rect.bottom + window.scrollY + 6) + "px";
    current = target;
  }
  function hide() { tip.hidden = true; current = null; }
  function tokenOf(node) {
    return node && node.closest ? node.closest("[data-k]") : null;
  }
  document.addEventListener("mouseover", function (e) {
    var t = tokenOf(e.target);
    if (t) { show(t); } else if (current && current !== document.activeElement) { hide(); }
  });
  document.addEventListener("focusin", function (e) {
    var t = tokenOf(e.target);
    if (t) { show(t); }
  });
  document.addEventListener("focusout", function (e) {
    if (tokenOf(e.target) === current) { hide(); }
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape") { hide(); return; }
    var t = tokenOf(document.activeElement);
    if (!t || !t.classList.contains("tok")) { return; }
    var sibling = null;
    if (e.key === "ArrowRight") { sibling = t.nextElementSibling; }
    if (e.key === "ArrowLeft") { sibling = t.previousElementSibling; }
    while (sibling && !sibling.classList.contains("tok")) {
      sibling = e.key === "ArrowRight"
        ? sibling.nextElementSibling
        : sibling.previousElementSibling;
    }
    if (sibling) { e.preventDefault(); sibling.focus(); }
  });
  document.documentElement.setAttribute("data-lps-ready", String(data.calls.length));
})();
