// The run page: frontier scatter (plotly, served locally) and candidate details on click.
(function () {
  "use strict";
  const boot = JSON.parse(document.getElementById("star-boot").dataset.boot);
  const auth = { Authorization: "Bearer " + boot.token };
  const $ = (id) => document.getElementById(id);
  // never leave the token in the address bar or history
  if (location.search.includes("token=")) history.replaceState(null, "", location.pathname);

  async function getJSON(path) {
    const r = await fetch(path, { headers: auth });
    const body = await r.json();
    if (!r.ok) throw new Error(JSON.stringify(body.detail || body));
    return body;
  }

  function esc(v) {
    return String(v).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  }

  function fillSelects(objectives) {
    for (const [id, pick] of [["x", 0], ["y", 1]]) {
      const sel = $(id);
      if (sel.options.length) continue;
      objectives.forEach((o, i) => sel.add(new Option(o, o, false, i === Math.min(pick, objectives.length - 1))));
    }
  }

  async function showCandidate(id) {
    const box = $("details");
    box.innerHTML = "<p>loading candidate " + id + "...</p>";
    try {
      const c = await getJSON(boot.api + "/candidates/" + id);
      let html = "<h2 id='candidate-title' data-candidate='" + c.id + "'>candidate " + c.id + "</h2>";
      html += "<p>generation " + esc(c.generation) + ", arch " + esc(c.arch) + ", genome " + esc(c.genome_hash.slice(0, 12)) + "</p>";
      html += "<p>artifacts: " + c.artifacts.map((a) => "<a href='#' data-art='" + a.url + "'>" + a.id + " (" + esc(a.quant) + ")</a>").join(", ") + "</p>";
      html += "<table><tr><th>device</th><th>ctx</th><th>ttft ms</th><th>decode ms</th><th>peak RSS MiB</th><th>temp °C</th><th>flags</th></tr>";
      for (const m of c.measurements) {
        const f = (a, b) => a == null ? "-" : a.toFixed(2) + (b == null ? "" : " ± " + b.toFixed(2));
        html += "<tr><td>" + esc(m.device_name) + "</td><td>" + m.context + "</td><td>" + f(m.ttft_median_ms, m.ttft_stddev_ms) +
          "</td><td>" + f(m.decode_median_ms, m.decode_stddev_ms) + "</td><td>" +
          (m.peak_rss_bytes == null ? (m.oom ? "OOM" : "-") : (m.peak_rss_bytes / 1048576).toFixed(1)) + "</td><td>" +
          esc(m.temp_before_c) + " → " + esc(m.temp_after_c) + "</td><td>" + (m.flagged_hot ? "hot " : "") + (m.flagged_noisy ? "noisy" : "") + "</td></tr>";
      }
      html += "</table>";
      html += "<h3>analytic costs</h3><pre>" + esc(JSON.stringify(c.analytic_costs, null, 1)) + "</pre>";
      html += "<h3>proxy metrics</h3><pre>" + esc(JSON.stringify(c.proxy_metrics, null, 1)) + "</pre>";
      html += "<h3>arch</h3><pre>" + esc(JSON.stringify(c.arch_spec, null, 1)) + "</pre>";
      html += "<h3>genome</h3><pre>" + esc(JSON.stringify(c.genome)) + "</pre>";
      box.innerHTML = html;
      box.querySelectorAll("a[data-art]").forEach((a) => a.addEventListener("click", (ev) => { ev.preventDefault(); download(a.dataset.art); }));
    } catch (e) {
      box.innerHTML = "<p class='err'>" + esc(e.message) + "</p>";
    }
  }

  async function download(url) {  // the artifact route needs the bearer token: fetch, then save
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
    const trace = (sel, name, color, size) => ({
      type: "scatter", mode: "markers", name: name + " (" + sel.length + ")",
      x: sel.map((p) => p.values[xs]), y: sel.map((p) => p.values[ys]),
      customdata: sel.map((p) => p.candidate_id),
      text: sel.map((p) => "candidate " + p.candidate_id + " gen " + p.generation + " " + (p.arch || "")),
      marker: { color: color, size: size },
    });
    const data = [trace(pts.filter((p) => !p.on_front), "feasible", "#999", 8),
                  trace(pts.filter((p) => p.on_front), "frontier", "#d62728", 12)];
    const layout = { xaxis: { title: { text: xs } }, yaxis: { title: { text: ys } },
                     hovermode: "closest", margin: { t: 30 }, title: { text: fr.run + (fr.device ? " on " + fr.device : "") } };
    await Plotly.react("plot", data, layout, { displaylogo: false });
    $("summary").textContent = fr.count + " candidates, " + pts.length + " plotted, " + fr.front + " on the frontier of " + fr.selected.join(", ");
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
