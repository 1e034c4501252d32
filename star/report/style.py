"""The report's stylesheet, scoped under ``.star-report`` so the run page can embed the body
without the report's rules touching the page's own controls."""

CSS = """
.star-report { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
  max-width: 1280px; margin: 0 auto; }
.star-report h1 { font-size: 24px; margin: 0.2em 0; }
.star-report h2 { font-size: 19px; margin: 1.6em 0 0.4em; padding-bottom: 0.2em;
  border-bottom: 2px solid #e4e4e7; }
.star-report h3 { font-size: 15px; margin: 1.2em 0 0.4em; }
.star-report .sub, .star-report .muted { color: #5f6368; }
.star-report .note { color: #5f6368; font-size: 12.5px; max-width: 980px; }
.star-report .warn { background: #fff4e5; border-left: 4px solid #E69F00; padding: 4px 10px; }
.star-report ul.headline { padding-left: 1.1em; }
.star-report ul.headline li { margin: 0.35em 0; }
.star-report table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 13px; }
.star-report th, .star-report td { border: 1px solid #e4e4e7; padding: 3px 7px;
  text-align: left; vertical-align: middle; }
.star-report th { background: #f6f6f8; font-weight: 600; }
.star-report td.num, .star-report th.num { text-align: right; font-variant-numeric: tabular-nums; }
.star-report td.better { background: #e3f4ea; }
.star-report td.worse { background: #fbe6e3; }
.star-report td.tie { background: #eef0f4; }
.star-report td.tie::after { content: " ≈"; color: #5f6368; }
.star-report .badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px;
  font-weight: 600; }
.star-report .badge.dominates { background: #1b7f4b; color: #fff; }
.star-report .badge.tie { background: #6b7280; color: #fff; }
.star-report .badge.trade-off { background: #E69F00; color: #111; }
.star-report .badge.dominated { background: #b3261e; color: #fff; }
.star-report .badge.incomplete { background: #d4d4d8; color: #111; }
.star-report .badge.baseline { background: #111; color: #fff; }
.star-report .badge.front { background: #d62728; color: #fff; }
.star-report .badge.est { background: #fff; color: #5f6368; border: 1px dashed #9a9a9a; }
.star-report .strip { display: inline-flex; gap: 1px; vertical-align: middle; }
.star-report .blk { display: inline-block; width: 13px; height: 15px; border-bottom: 5px solid;
  color: #fff; font: 600 10px/15px ui-monospace, monospace; text-align: center;
  font-style: normal; border-radius: 2px 2px 0 0; }
.star-report .cands { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr));
  gap: 10px; }
.star-report .card { border: 1px solid #e4e4e7; border-radius: 8px; padding: 8px 12px; }
.star-report .card.baseline { border-color: #111; }
.star-report .card.front { border-color: #d62728; }
.star-report .card h4 { margin: 0 0 6px; font-size: 13.5px; }
.star-report .card dl { display: grid; grid-template-columns: max-content 1fr; gap: 1px 12px;
  margin: 6px 0 0; font-size: 12.5px; }
.star-report .card dt { color: #5f6368; }
.star-report .card dd { margin: 0; }
.star-report .legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12.5px;
  margin: 4px 0 8px; }
.star-report .legend span { white-space: nowrap; }
.star-report .sw { display: inline-block; width: 12px; height: 12px; vertical-align: -2px;
  margin-right: 4px; border-radius: 2px; border: 1px solid #0002; }
.star-report .plots { display: flex; flex-wrap: wrap; gap: 6px 14px; }
.star-report figure { margin: 0; }
.star-report figcaption { font-size: 12px; color: #5f6368; max-width: 380px; }
.star-report svg.plot { background: #fff; }
.star-report svg .frame { fill: none; stroke: #c7c7cc; }
.star-report svg .grid { stroke: #eeeeef; }
.star-report svg .tick { font-size: 10px; fill: #5f6368; }
.star-report svg .axis { font-size: 11.5px; fill: #1d1d1f; }
.star-report svg .blabel { font-size: 11px; font-weight: 600; fill: #111; }
.star-report svg .line { stroke-width: 1.8; }
.star-report details { margin: 0.5em 0; }
.star-report summary { cursor: pointer; color: #0b57d0; }
.star-report td.prov { font-size: 12px; }
.star-report table.prov td.num, .star-report table.ratios td.num { white-space: nowrap; }
.star-report .scroll { overflow-x: auto; max-width: 100%; }
.star-report tr:target { outline: 2px solid #0b57d0; }
.star-report a { color: #0b57d0; text-decoration: none; }
"""
