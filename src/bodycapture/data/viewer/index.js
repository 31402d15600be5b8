// index.html: one row per image of a folder run (written by bodycapture/io/report.py): thumbnail, people,
// failures and doubtful fits, sortable by any column. Data: the JSON in #report-data.
(function () {
  "use strict";
  const rows = JSON.parse(document.getElementById("report-data").textContent).rows;
  const body = document.querySelector("#index tbody");
  const count = (status) => rows.filter((r) => r.status === status).length;
  const people = rows.reduce((n, r) => n + (r.people || 0), 0);
  const doubtful = rows.reduce((n, r) => n + (r.doubtful || 0), 0);
  const parts = [`${rows.length} image${rows.length === 1 ? "" : "s"}`, `${people} ${people === 1 ? "person" : "people"} fitted`];
  if (doubtful) parts.push(`${doubtful} doubtful`);
  for (const [status, word] of [["failed", "failed"], ["empty", "with nobody"], ["skipped", "kept from before"]]) {
    if (count(status)) parts.push(`${count(status)} ${word}`);
  }
  document.getElementById("summary").textContent = parts.join(" · ");

  function cell(tr, content, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (content instanceof Node) td.appendChild(content); else td.textContent = content === null || content === undefined ? "–" : String(content);
    tr.appendChild(td);
  }

  function link(row, child) {
    if (!row.report) return child;
    const a = document.createElement("a");
    a.href = row.report;
    a.appendChild(child);
    return a;
  }

  for (const row of rows) {
    const tr = document.createElement("tr");
    tr.className = row.status;
    tr.dataset.name = row.name;
    let thumb = document.createTextNode("");
    if (row.thumbnail) {
      thumb = document.createElement("img");
      thumb.src = row.thumbnail;
      thumb.loading = "lazy";
      thumb.alt = row.name;
    }
    cell(tr, link(row, thumb));
    cell(tr, link(row, document.createTextNode(row.name)));
    cell(tr, row.status);
    cell(tr, row.people, "num");
    cell(tr, row.found, "num");
    cell(tr, row.doubtful, "num");
    cell(tr, row.seconds, "num");
    cell(tr, row.message);
    tr._row = row;
    body.appendChild(tr);
  }

  document.querySelectorAll("#index th").forEach((th) => {
    if (th.dataset.type === "none") return;
    th.addEventListener("click", () => {
      const key = th.dataset.key, numeric = th.dataset.type === "number";
      const ascending = th.getAttribute("aria-sort") !== "ascending";
      document.querySelectorAll("#index th").forEach((h) => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const value = (tr) => tr._row[key];
      const trs = Array.from(body.children).sort((a, b) => {
        const x = value(a), y = value(b);
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;  // unknowns last either way
        if (y === null || y === undefined) return -1;
        const order = numeric ? x - y : String(x).localeCompare(String(y));
        return ascending ? order : -order;
      });
      trs.forEach((tr) => body.appendChild(tr));
    });
  });
})();
