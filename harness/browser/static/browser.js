// The benchmark browser's page logic: sortable tables and the ranked-prompts comparison.
// Plain script, no modules, so the pages work opened from disk (file://).
(function () {
  "use strict";

  function sortValue(td) {
    var s = td.getAttribute("data-sort");
    if (s !== null && s !== "" && !isNaN(Number(s))) return { num: Number(s) };
    return { text: (s || td.textContent).trim().toLowerCase() };
  }

  function compare(a, b) {
    if (a.num !== undefined && b.num !== undefined) return a.num - b.num;
    if (a.num !== undefined) return -1; // numbers before text and blanks
    if (b.num !== undefined) return 1;
    return a.text < b.text ? -1 : a.text > b.text ? 1 : 0;
  }

  function makeSortable(table) {
    var headers = table.querySelectorAll("thead th");
    headers.forEach(function (th, col) {
      th.addEventListener("click", function () {
        var dir = th.getAttribute("data-dir") === "asc" ? "desc" : "asc";
        headers.forEach(function (h) { h.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", dir);
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var c = compare(sortValue(r1.cells[col]), sortValue(r2.cells[col]));
          return dir === "asc" ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  function option(select, value, text) {
    var o = document.createElement("option");
    o.value = value; o.textContent = text; select.appendChild(o);
  }

  function ranked() {
    var node = document.getElementById("ranking-data");
    var form = document.getElementById("compare");
    if (!node || !form) return;
    var data = JSON.parse(node.textContent);
    data.labels.forEach(function (l) { option(form.a, l, l); option(form.b, l, l); });
    data.metrics.forEach(function (m, i) { option(form.metric, String(i), m.title); });
    if (data.labels.length > 1) form.b.selectedIndex = 1;
    var tbody = document.querySelector("#differences tbody");
    function fmt(m, v) { return v === null || v === undefined ? "—" : (v * m.scale).toFixed(m.digits); }
    function draw() {
      var m = data.metrics[Number(form.metric.value)];
      if (!m) return;
      var rows = [];
      data.items.forEach(function (it) {
        var a = (it.values[form.a.value] || {})[m.key], b = (it.values[form.b.value] || {})[m.key];
        if (a === null || a === undefined || b === null || b === undefined) return;
        rows.push({ it: it, a: a, b: b, d: a - b });
      });
      rows.sort(function (x, y) { return Math.abs(y.d) - Math.abs(x.d); });
      tbody.textContent = "";
      rows.forEach(function (r) {
        var tr = document.createElement("tr");
        var cells = [r.it.category, null, String(r.it.seed), fmt(m, r.a), fmt(m, r.b), fmt(m, r.d)];
        cells.forEach(function (text, i) {
          var td = document.createElement("td");
          if (i === 1) {
            var a = document.createElement("a"); a.href = r.it.page; a.textContent = r.it.prompt; td.appendChild(a);
          } else { td.textContent = text; }
          if (i >= 3) td.setAttribute("data-sort", String([r.a, r.b, r.d][i - 3]));
          tr.appendChild(td);
        });
        tbody.appendChild(tr);
      });
      if (!rows.length) {
        var tr = document.createElement("tr"), td = document.createElement("td");
        td.colSpan = 6; td.textContent = "no prompt has this number for both methods";
        tr.appendChild(td); tbody.appendChild(tr);
      }
    }
    form.addEventListener("change", draw);
    draw();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.sortable").forEach(makeSortable);
    ranked();
  });
})();
