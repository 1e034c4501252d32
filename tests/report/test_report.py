"""The study report of a simulated study (baselines, both flash-attention settings, staging):
its answer against the baseline (ratios recomputed here from the stored rows), the frontier
plots, layer strips, staging savings, ties, provenance, and that it loads nothing."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from sqlalchemy import select

from star.cost import Quant
from star.db import Database
from star.db.models import Measurement
from star.genome import Genome
from star.report.devicetime import run_cost_ms
from star.report.html import render_document
from star.report.model import Report
from star.search.frontier import run_frontier
from star.search.objectives import MetricKey, describe
from star.search.rundata import RunData, calibrate
from tests.report.conftest import CONFIRM, OBJECTIVES, SCREEN, Study
from tests.search.test_study import figures


class Elements(HTMLParser):
    """Every start tag with its attributes, and the visible text (outside tags and scripts)."""

    def __init__(self, doc: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self._script = False
        self.feed(doc)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._script = tag in ("script", "style", "title")

    def handle_endtag(self, tag: str) -> None:
        self._script = False

    def handle_data(self, data: str) -> None:
        if not self._script:
            self.text.append(data)

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str]]:
        """Tags with every attribute given (``data_x`` means ``data-x``): ``"*"`` = present,
        else equal to the value or, for ``class``, one of its words."""
        def match(a: dict[str, str]) -> bool:
            for key, want in attrs.items():
                name = key.replace("_", "-")
                if name not in a or (want != "*" and want != a[name]
                                     and want not in a[name].split()):
                    return False
            return True
        return [a for t, a in self.tags if (tag is None or t == tag) and match(a)]


@pytest.fixture(scope="module")
def doc(report: Report) -> str:
    return render_document(report)


@pytest.fixture(scope="module")
def parsed(doc: str) -> Elements:
    return Elements(doc)


def stored_best(study: Study, genome_id: str, data: RunData, context: int,
                column: str) -> float:
    """The better flash-attention setting's figure, read straight from the measurement rows
    (one device in this study, so no worst-device step)."""
    db = Database(study.url)
    try:
        with db.session_scope(readonly=True) as s:
            cid = data.candidates[genome_id].id
            rows = s.scalars(select(Measurement).where(Measurement.candidate_id == cid,
                                                       Measurement.context == context)).all()
            values = [getattr(m, column) for m in rows]
    finally:
        db.dispose()
    assert len(values) == 2, "measured under both flash-attention settings"
    return float(min(values))


def test_ratio_table_gives_candidate_over_baseline_from_the_stored_rows(
        study: Study, data: RunData, report: Report, parsed: Elements) -> None:
    columns = {"ttft_ms": "ttft_median_ms", "decode_ms": "decode_median_ms",
               "peak_rss_mb": "peak_rss_bytes"}
    cells = parsed.find("td", data_key="*", data_ratio="*")
    assert len(cells) == len(report.front) * 3 * 2  # front x metrics x contexts, one baseline
    checked = 0
    for cell in cells:
        metric, context = cell["data-key"].split("@")[0], int(cell["data-key"].split("@")[1]
                                                              .split("/")[0])
        got = float(cell["data-ratio"])
        cand = stored_best(study, cell["data-candidate"], data, context, columns[metric])
        base = stored_best(study, cell["data-baseline"], data, context, columns[metric])
        assert got == pytest.approx(cand / base, rel=1e-5), cell
        checked += 1
    assert checked == len(cells) and {c["data-baseline"] for c in cells} == {study.baseline}


def test_front_matches_star_frontier_and_excludes_baselines_and_estimates(
        study: Study, report: Report) -> None:
    db = Database(study.url)
    try:
        expected = {p.genome_id for p in run_frontier(db, study.run).front}
    finally:
        db.dispose()
    assert set(report.front) == expected
    assert study.baseline not in report.front
    assert all(not report.candidates[g].estimated for g in report.front)
    estimated = [c for c in report.candidates.values() if c.estimated]
    assert estimated, "staging leaves unconfirmed candidates with estimates"


def test_verdicts_name_the_baseline_each_frontier_candidate_dominates(
        report: Report, parsed: Elements) -> None:
    for f in report.front:
        comp = report.comparison(f, report.baselines[0])
        assert comp is not None
        outcomes = [c.outcome for c in comp.objectives.values()]
        assert (comp.verdict == "dominates") == ("worse" not in outcomes
                                                 and "better" in outcomes)
    shown = [a["data-verdict"] for a in parsed.find("td", data_verdict="*")]
    assert sorted(shown) == sorted(c.verdict for c in report.comparisons)


def test_frontier_plots_mark_baselines_frontier_and_estimates_distinctly(
        report: Report, doc: str, parsed: Elements) -> None:
    pairs = len(OBJECTIVES) * (len(OBJECTIVES) - 1) // 2
    assert len(parsed.find("figure", data_x="*")) == pairs
    baselines = parsed.find("g", **{"class": "baseline"})
    assert len(baselines) == pairs  # one labelled diamond per plot
    assert all(b["data-genome"] == report.baselines[0] for b in baselines)
    assert doc.count(">llama-3.2-1b</text>") == pairs  # its label, in every plot
    fronts = parsed.find("circle", **{"class": "front"})
    assert {c["data-genome"] for c in fronts} == set(report.front)
    assert parsed.find("circle", **{"class": "est"}), "staged estimates are drawn hollow"
    # every objective is named with its unit and direction
    for name in OBJECTIVES:
        assert describe(name) in doc


def test_layer_strips_spell_each_architecture(report: Report, data: RunData,
                                              parsed: Elements) -> None:
    letters = {"attention": "A", "swa": "W", "shortconv": "C", "ssm": "S",
               "linear_attention": "L"}
    cards = parsed.find("div", **{"class": "card"})
    assert len(cards) == len(report.candidates)
    for gid in [*report.front, *report.baselines]:
        spec = data.config.deploy_spec(Genome(tuple(data.candidates[gid].genome["genes"])))
        expected = "".join(letters[layer.mixer.kind.value] for layer in spec.layers)
        strips = parsed.find("span", data_pattern="*")
        assert any(s["data-pattern"] == expected for s in strips)
        assert report.candidates[gid].name.count(" · ") == 2
    base = report.candidates[report.baselines[0]]
    assert "".join(b.letter for b in base.blocks) == "A" * 16  # Llama-3.2-1B: 16 attention
    assert base.name.startswith("llama-3.2-1b · llama · 16 layers (16 attn)")


def test_staging_counts_and_savings_match_what_the_device_would_have_spent(
        study: Study, data: RunData, report: Report, parsed: Elements) -> None:
    t = report.device_time
    asked = [c for c in data.candidates.values() if not c.is_baseline]
    confirmed = [c for c in asked if any(j.stage == "confirm" for j in data.jobs[c.id])]
    screened = [c for c in asked if any(j.stage == "screen" for j in data.jobs[c.id])]
    assert (t.screened, t.confirmed, t.baselines_confirmed) == (len(screened), len(confirmed), 1)
    staging = parsed.find("p", **{"class": "staging"})[0]
    assert (int(staging["data-screened"]), int(staging["data-confirmed"])) == (
        len(screened), len(confirmed))
    # the truth: what the simulated device would have measured at the confirm context for
    # every screen job of an unconfirmed candidate, priced by llama-bench's way of spending
    cfg = data.config
    truth = 0.0
    for cand in screened:
        if cand in confirmed:
            continue
        spec = cfg.deploy_spec(Genome(tuple(cand.genome["genes"])))
        for job in data.jobs[cand.id]:
            f = figures(spec, cfg.quant.value, CONFIRM, bool(job.flash_attn))
            truth += run_cost_ms(f["ttft"], f["decode"], cfg.repetitions, cfg.n_gen)
    assert t.saved_s is not None and truth > 0
    assert t.saved_s * 1e3 == pytest.approx(truth, rel=0.15)  # calibrated estimates
    assert float(staging["data-saved"]) == pytest.approx(t.saved_s, rel=1e-5)
    spent = 0.0  # llama-bench: (repetitions + 2) prefills, n_gen x repetitions tokens
    for rows in data.measurements.values():
        for row in rows:
            m, reps, n_gen = row.measurement, row.measurement.runtime["repetitions"], cfg.n_gen
            spent += m.tries * ((reps + 2) * m.ttft_median_ms + n_gen * reps * m.decode_median_ms)
    assert t.spent_s * 1e3 == pytest.approx(spent, rel=1e-9)
    # the calibration of the long-context estimates, per measured metric: the search's own
    cal = calibrate(data, [MetricKey(m, CONFIRM, "x86")
                           for m in ("ttft_ms", "decode_ms", "peak_rss_mb")])
    assert {c.metric for c in t.calibration} == {"ttft_ms", "decode_ms", "peak_rss_mb"}
    for row in t.calibration:
        group = (row.metric, "x86")
        assert (row.factor, row.count, row.error) == (cal.factors[group], cal.counts[group],
                                                      cal.errors[group])
        assert row.count == len(confirmed) + 1  # every confirmed candidate and the baseline
        assert row.loo_error is not None  # each candidate left out of its own factor
    assert len(parsed.find("table", **{"class": "calib"})) == 1


def test_ties_within_spread_are_called_out(study: Study, report: Report,
                                           parsed: Elements) -> None:
    a, b = study.twin_a, study.twin_b
    assert {a, b} <= set(report.front), "the planted twins are both on the frontier"
    assert [(t.a, t.b) for t in report.ties] in ([(a, b)], [(b, a)])
    assert len(parsed.find("li", **{"class": "tie", "data-a": "*"})) == 1
    comp = report.comparison(a, study.baseline)
    assert comp is not None
    assert comp.cells[f"ttft_ms@{SCREEN}/x86"].outcome == "tie"
    assert comp.cells[f"ttft_ms@{CONFIRM}/x86"].outcome == "better"
    tie_cells = parsed.find("td", data_candidate=a, data_key=f"ttft_ms@{SCREEN}/x86")
    assert [c["data-outcome"] for c in tie_cells] == ["tie"]
    listed = parsed.find("li", **{"class": "tie-baseline"})
    assert any(li["data-a"] == a and li["data-b"] == study.baseline for li in listed)


def test_provenance_lists_every_measurement_with_its_settings(
        study: Study, data: RunData, report: Report, doc: str, parsed: Elements) -> None:
    ids = {m.measurement.id for rows in data.measurements.values() for m in rows}
    assert {int(a["id"][1:]) for a in parsed.find("tr", id="*")} == ids
    row = doc[doc.index(f'<tr id="m{study.noisy_measurement}">'):]
    row = row[:row.index("</tr>")]
    assert "noisy" in row and "load 0.42" in row and "waited 12 s" in row
    assert "abc1234" in row and "FA " in row
    assert report.runtimes == ("llama.cpp abc1234, 1 thread, KV cache f16/f16",)
    # the ratio cells link to the measurement that gave the candidate's figure
    links = set(re.findall(r'href="#m(\d+)"', doc))
    assert links and {int(i) for i in links} <= ids


def test_report_loads_nothing_and_shows_no_raw_names(doc: str, parsed: Elements) -> None:
    assert "http://" not in doc and "https://" not in doc
    assert not re.search(r"<(link|img|iframe|object|embed)\b", doc)
    assert "@import" not in doc and "url(" not in doc
    assert all(not a.get("src") for _, a in parsed.tags)
    assert all(a["href"].startswith("#") for _, a in parsed.tags if "href" in a)
    visible = " ".join(parsed.text)
    assert "ttft_ms" not in visible and "peak_rss_mb" not in visible  # describe() everywhere
    assert "{" not in visible  # no raw JSON


def test_quant_of_the_run_is_reported(report: Report, data: RunData) -> None:
    assert report.quant == data.config.quant.value == Quant.Q8_0.value
    for g in report.front:
        c = report.candidates[g]
        assert c.weight_bytes == data.candidates[g].analytic_costs["weight_bytes"]["q8_0"]
        costs: dict[str, Any] = data.candidates[g].analytic_costs
        assert c.cache_bytes[CONFIRM] == pytest.approx(
            costs["kv_bytes"][str(CONFIRM)] + costs["state_bytes"])
        assert not math.isnan(c.quality.spread or math.nan)
