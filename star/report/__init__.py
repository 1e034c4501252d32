"""The study report: a run's frontier explained against its baselines, as one HTML file.

``build_report`` (star.report.build) gathers a frozen ``Report`` (star.report.model) from the
run's stored rows; ``render_document`` / ``render_body`` (star.report.html) draw it with inline
CSS and SVG only, so the file needs no network and the run page can embed the same body.
"""
