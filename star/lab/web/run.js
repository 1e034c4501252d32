// The run page: frontier scatter (plotly, served locally) and candidate details on click.
(function () {
  "use strict";
  const boot = JSON.parse(document.getElementById("star-boot").dataset.boot);
  // reads go with the session cookie set by the login form (no token in the page or URL)
  const auth = {};
  const $ = (id) => document.getElementById(id);

  async function getJSON(path) {
    const r = await fetch(path, { headers: auth });
    const body = await r.json();
    if (!r.ok) throw new Error(JSON.stringify(body.detail || body));
    return body;
  }

  function esc(v) {
    return String(v).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  }

  // every objective is shown by its human name (unit, direction); the value stays the name
  const label = (o) => (boot.labels && boot.labels[o]) || o;

  // the report's card of a candidate (rendered by the server below the plot), if any
  function reportCard(id) {
    return document.querySelector(".star-report .card[data-candidate='" + Number(id) + "']");
  }

  function fillSelects(objectives) {
    for (const [id, pick] of [["x", 0], ["y", 1]]) {
      const sel = $(id);
      if (sel.options.length) continue;
      objectives.forEach((o, i) => sel.add(new Option(label(o), o, false, i === Math.min(pick, objectives.length - 1))));
    }
  }

  async function showCandidate(id) {
    const box = $("details");
    box.innerHTML = "<p>loading candidate " + id + "...</p>";
    try {
      const c = await getJSON(boot.api + "/candidates/" + id);
      const card = reportCard(c.id);
      let html = "<h2 id='candidate-title' data-candidate='" + c.id + "'>" +
        esc(card ? card.dataset.name : "candidate " + c.id) + "</h2>";
      html += "<p>candidate " + c.id + ", generation " + esc(c.generation ?? "–") + ", llama.cpp arch " + esc(c.arch ?? "?") +
        (card ? " · <a href='#" + card.id + "'>in the report</a>" : "") + "</p>";
      html += "<div class='star-report' id='card-slot'></div>";
      html += "<p>artifacts: " + c.artifacts.map((a) => "<a href='#' data-art='" + a.url + "'>" + a.id + " (" + esc(a.quant) + ")</a>").join(", ") + "</p>";
      html += "<h3>measurements</h3><table><tr><th>device</th><th>ctx</th><th>flash attn</th><th>TTFT ms</th><th>decode ms/token</th><th>peak RSS MiB</th><th>temp °C</th><th>flags</th></tr>";
      for (const m of c.measurements) {
        const f = (a, b) => a == null ? "-" : a.toFixed(2) + (b == null ? "" : " ± " + b.toFixed(2));
        const fa = m.runtime && m.runtime.flash_attn != null ? (m.runtime.flash_attn ? "on" : "off") : "–";
        html += "<tr><td>" + esc(m.device_name) + "</td><td>" + m.context + "</td><td>" + fa + "</td><td>" + f(m.ttft_median_ms, m.ttft_stddev_ms) +
          "</td><td>" + f(m.decode_median_ms, m.decode_stddev_ms) + "</td><td>" +
          (m.peak_rss_bytes == null ? (m.oom ? "OOM" : "-") : (m.peak_rss_bytes / 1048576).toFixed(1)) + "</td><td>" +
          esc(m.temp_before_c ?? "?") + " → " + esc(m.temp_after_c ?? "?") + "</td><td>" + (m.flagged_hot ? "hot " : "") + (m.flagged_noisy ? "noisy" : "") + "</td></tr>";
      }
      html += "</table>";
      box.innerHTML = html;
      if (card) {  // the report's own card (name, layer strip, costs), without its anchor id
        const copy = card.cloneNode(true);
        copy.removeAttribute("id");
        $("card-slot").appendChild(copy);
      }
      box.querySelectorAll("a[data-art]").forEach((a) => a.addEventListener("click", (ev) => { ev.preventDefault(); download(a.dataset.art); }));
    } catch (e) {
      box.innerHTML = "<p class='err'>" + esc(e.message) + "</p>";
    }
  }

  async function download(url) {  // fetch with the session cookie, then save
    const r = await fetch(url, { headers: auth });
    const blob = await r.blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = url.split("/").slice(-2, -1)[0] + ".gguf";
    a.click();
  }

  function num(v) { return typeof v === "number" ? v : null; }

  async function draw() {
    const x = $("x").value, y = $("y").value, device = $("device").value.trim();
    const params = new URLSearchParams();
    if (x && y) params.set("objectives", x === y ? x : x + "," + y);
    if (device) params.set("device", device);
    let fr;
    try {
      fr = await getJSON(boot.api + "/runs/" + boot.runId + "/frontier?" + params);
    } catch (e) {
      $("summary").innerHTML = "<span class='err'>" + esc(e.message) + "</span>";
      return;
    }
    fillSelects(fr.objectives);
    const xs = $("x").value, ys = $("y").value;
    const pts = fr.data.filter((p) => p.feasible && num(p.values[xs]) !== null && num(p.values[ys]) !== null);
    // roles come from the report's cards: baselines are drawn apart and never as the
    // frontier; a staged estimate (not confirmed) is hollow and never on the frontier either
    const role = (p) => { const card = reportCard(p.candidate_id);
      if (card && card.classList.contains("baseline")) return "baseline";
      if (card && card.dataset.estimated === "1") return "estimated";
      return p.on_front ? "front" : "feasible"; };
    const trace = (sel, name, marker, withText) => ({
      type: "scatter", mode: withText ? "markers+text" : "markers", name: name + " (" + sel.length + ")",
      x: sel.map((p) => p.values[xs]), y: sel.map((p) => p.values[ys]),
      customdata: sel.map((p) => p.candidate_id),
      text: sel.map((p) => { const card = reportCard(p.candidate_id);
        return card ? card.dataset.name : "candidate " + p.candidate_id + " gen " + p.generation + " " + (p.arch || ""); }),
      textposition: "top right", marker: marker,
    });
    const of = (r) => pts.filter((p) => role(p) === r);
    const front = of("front");
    const data = [trace(of("feasible"), "feasible", { color: "#999", size: 8 }),
                  trace(front, "frontier", { color: "#d62728", size: 12 })];
    if (of("estimated").length) {
      data.push(trace(of("estimated"), "staged estimate", { color: "rgba(0,0,0,0)", size: 9, line: { color: "#999", width: 1.5 } }));
    }
    if (of("baseline").length) {
      const base = trace(of("baseline"), "baseline", { color: "#111", size: 13, symbol: "diamond" }, true);
      base.text = of("baseline").map((p) => { const card = reportCard(p.candidate_id);
        return card ? card.dataset.name.split(" · ")[0] : "baseline"; });
      data.push(base);
    }
    const layout = { xaxis: { title: { text: label(xs) } }, yaxis: { title: { text: label(ys) } },
                     hovermode: "closest", margin: { t: 30 }, title: { text: fr.run + (fr.device ? " on " + fr.device : "") } };
    await Plotly.react("plot", data, layout, { displaylogo: false });
    $("summary").textContent = fr.count + " candidates, " + pts.length + " plotted, " + front.length + " on the frontier of " + fr.selected.map(label).join(", ");
    const plot = $("plot");
    if (!plot.dataset.wired) {
      plot.on("plotly_click", (ev) => { if (ev.points.length) showCandidate(ev.points[0].customdata); });
      plot.dataset.wired = "1";
    }
    document.body.dataset.points = String(pts.length);
  }

  $("apply").addEventListener("click", draw);
  $("x").addEventListener("change", draw);
  $("y").addEventListener("change", draw);
  $("csv").addEventListener("click", (ev) => { ev.preventDefault(); download(boot.api + "/runs/" + boot.runId + "/measurements.csv"); });
  window.starShowCandidate = showCandidate;
  fillSelects(boot.objectives);
  draw();
})();
