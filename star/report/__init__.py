"""The study report: a run's frontier explained against its baselines, as one HTML file.

``build.build_report`` gathers a frozen ``model.Report`` from the run's stored rows (with
``compare`` deciding ties and verdicts, ``quality`` the proxy loss's spread, ``devicetime`` the
device time spent and saved); ``html.render_document`` / ``html.render_body`` draw it (sections
in ``answer``, ``plots``, ``backmatter``; charts in ``svg``; layer strips in ``strip``) with
inline CSS and SVG only, so the file needs no network and the run page embeds the same body.
"""
