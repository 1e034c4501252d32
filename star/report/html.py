"""The report as HTML: one self-contained document (inline CSS and SVG, no script, nothing
loaded over a network), or just its body for the run page.

Order follows the reader's questions: what beats the baselines and by how much, where the
frontier lies, what the winning architectures look like, how they scale with context, which
differences are noise, what the staging cost and saved, and where every figure came from.
"""

from __future__ import annotations

from html import escape

from star.report import fmt
from star.report.answer import answer_section
from star.report.atoms import context_list, name_html, plural, strip_html
from star.report.backmatter import provenance_section, staging_section, ties_section
from star.report.model import CandidateView, Report
from star.report.plots import context_plots, frontier_plots
from star.report.runtimes import runtimes_section
from star.report.strip import legend
from star.report.style import CSS
from star.search.objectives import describe, short_context

__all__ = ["render_body", "render_document", "strip_html"]


def _header(r: Report) -> str:
    n = sum(not c.is_baseline for c in r.candidates.values())
    objectives = ", ".join(escape(describe(k)) for k in r.objectives)
    budgets = "; ".join(f"{escape(describe(k))} {op} {fmt.num(v)}" for k, op, v in r.budgets)
    staging = (f"staged: screened at {context_list(r.screen_contexts)}, confirmed at "
               f"{context_list(r.confirm_contexts)}" if r.confirm_contexts else "not staged")
    settings = " and ".join(fmt.setting(s) for s in r.flash_attn)
    out = [f"<header><h1>Run {escape(r.run)}</h1>",
           f'<p class="sub">{escape(r.status or "?")} · {n} candidates in {r.generations} '
           f"generations · {len(r.baselines)} baseline{'s' if len(r.baselines) != 1 else ''}"
           f" · {len(r.front)} on the frontier · {escape(r.quant)} weights · contexts "
           f"{context_list(r.contexts)} ({staging}) · device classes "
           f"{escape(', '.join(r.device_classes) or 'none')} · measured with {settings}, "
           f"each objective at the better setting · {plural(r.repetitions, 'repetition')}, "
           f"{r.n_gen} generated tokens per decode figure</p>",
           f"<p><b>Objectives</b> (all minimised): {objectives}"
           + (f". <b>Budgets</b>: {budgets}" if budgets else "") + "</p>"]
    out += [f'<p class="warn">{escape(n)}</p>' for n in r.notes]
    return "".join(out) + "</header>"


def _card(c: CandidateView) -> str:
    cls = "baseline" if c.is_baseline else "front" if c.on_front else ""
    cache = "; ".join(f"{fmt.size(v)} @{short_context(k)}" for k, v in c.cache_bytes.items())
    where = "baseline" if c.is_baseline else f"generation {c.generation}"
    family = (f"{escape(c.arch)} (llama.cpp arch)" if c.arch
              else "no stock llama.cpp arch (measured by ExecuTorch)")
    items = [("family", family),
             ("params", f"{fmt.count(c.params)} ({fmt.count(c.non_embedding_params)} "
                        "non-embedding)"),
             ("weights", fmt.size(c.weight_bytes)),
             ("KV cache", f"{fmt.size(c.kv_bytes_per_token)}/token"),
             ("recurrent state", fmt.size(c.state_bytes)),
             ("KV + state", cache or "–"),
             ("proxy loss ↓", f"{fmt.figure(c.quality)}"),
             ("origin", f"{where} · genome {c.genome_id[:16]}")]
    if not c.feasible and c.reason:
        items.append(("infeasible", escape(c.reason)))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    return (f'<div class="card {cls}" id="c-{c.short_id}" data-genome="{c.genome_id}" '
            f'data-candidate="{c.candidate_id}" data-name="{escape(c.name)}" '
            f'data-estimated="{int(bool(c.estimated))}">'
            f"<h4>{name_html(c)}</h4>{strip_html(c.blocks)}<dl>{dl}</dl></div>")


def _architectures(r: Report) -> str:
    key = "".join(f'<span><i class="sw" style="background:{colour}"></i>{letter} {escape(n)}'
                  "</span>" for letter, colour, n in legend())
    shown = [*r.front, *r.baselines]
    others = [c for g, c in r.candidates.items() if g not in shown and c.feasible]
    bad = [c for g, c in r.candidates.items() if g not in shown and not c.feasible]
    out = [f'<div class="legend">{key}</div><p class="note">Block: token mixer (letter and '
           "colour); band under it: channel mixer. KV cache at f16; bytes at each context "
           "count the KV cache holding that many tokens plus the recurrent state.</p>",
           f'<div class="cands">{"".join(_card(r.candidates[g]) for g in shown)}</div>']
    if others:
        out.append(f"<details><summary>{len(others)} other feasible candidates</summary>"
                   f'<div class="cands">{"".join(_card(c) for c in others)}</div></details>')
    if bad:
        rows = "".join(f"<tr><td>{strip_html(c.blocks)} {name_html(c)}</td><td>{escape(c.reason)}"
                       "</td></tr>" for c in bad)
        out.append(f"<details><summary>{len(bad)} infeasible candidates and why</summary>"
                   f"<table><tr><th>candidate</th><th>reason</th></tr>{rows}</table>"
                   f'<div class="cands">{"".join(_card(c) for c in bad)}</div></details>')
    return "".join(out)


# Following a link to a measurement opens the collapsed table it sits in (no other script).
_OPEN_TARGET = (
    "<script>(function(){function show(){var id=location.hash.slice(1);"
    "var t=id&&document.getElementById(id);for(var e=t;e;e=e.parentElement)"
    "{if(e.tagName==='DETAILS'){e.open=true;}}if(t){t.scrollIntoView();}}"
    "window.addEventListener('hashchange',show);show();})();</script>")


def render_body(report: Report) -> str:
    """The report's sections inside ``<div class="star-report">`` (needs ``CSS``)."""
    sections = [
        ("answer", "Against the baselines", answer_section(report)),
        ("frontier", "The frontier, per pair of objectives", frontier_plots(report)),
        ("architectures", "Architectures", _architectures(report)),
        ("context", "Latency and memory against context, per family", context_plots(report)),
        ("ties", "Ties", ties_section(report)),
        ("staging", "Staging and device time", staging_section(report)),
        *([("runtimes", "Runtimes compared", runtimes_section(
            report.runtime_agreement, {g: c.name for g, c in report.candidates.items()}))]
          if report.runtime_agreement is not None else []),
        ("provenance", "Provenance", provenance_section(report)),
    ]
    body = "".join(f'<section id="{sid}"><h2>{escape(title)}</h2>{html}</section>'
                   for sid, title, html in sections)
    return f'<div class="star-report">{_header(report)}{body}{_OPEN_TARGET}</div>'


def render_document(report: Report) -> str:
    """A complete, self-contained HTML file."""
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>STAR lab report: {escape(report.run)}</title><style>{CSS}"
            "body{margin:16px;}</style></head><body>"
            f"{render_body(report)}</body></html>\n")
