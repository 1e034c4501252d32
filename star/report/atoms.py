"""Small HTML pieces every section uses: the layer strip, a candidate's linked name, counts."""

from __future__ import annotations

from html import escape

from star.report.model import CandidateView
from star.report.strip import Block
from star.search.objectives import short_context


def strip_html(blocks: tuple[Block, ...] | list[Block]) -> str:
    """The layer strip: one block per layer, token mixer letter and fill, channel band."""
    if not blocks:
        return '<span class="muted">layer pattern not stored</span>'
    pattern = "".join(b.letter for b in blocks)
    inner = "".join(
        f'<i class="blk" style="background:{b.fill};border-bottom-color:{b.band}" '
        f'title="{escape(b.title)}">{b.letter}</i>' for b in blocks)
    return f'<span class="strip" data-pattern="{pattern}">{inner}</span>'


def name_html(c: CandidateView) -> str:
    badge = ('<span class="badge baseline">baseline</span> ' if c.is_baseline else
             '<span class="badge front">frontier</span> ' if c.on_front else "")
    return f'{badge}<a href="#c-{c.short_id}">{escape(c.name)}</a>'


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def context_list(values: tuple[int, ...]) -> str:
    return ", ".join(short_context(c) for c in values) or "–"
