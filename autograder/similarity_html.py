"""The HTML page of `make similarity`: a ranked table of pairs, then the top pairs' cells side by
side with the matched code highlighted. Every student text is HTML-escaped."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autograder.similarity import CellMatch, PairResult, SimilarityReport

TABLE_ROWS = 200  # pairs listed in the table; the CSV has them all
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1500px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-top: 1px solid #ccc; padding-top: 1em; }
h3 { font-size: 1em; margin: 1.2em 0 0.4em; }
table.pairs { border-collapse: collapse; } table.pairs td, table.pairs th { padding: 3px 10px; text-align: left; }
table.pairs tr:nth-child(even) { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bar { display: inline-block; height: 0.7em; background: #d9534f; vertical-align: middle; margin-right: 6px; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.side div { min-width: 0; } .side h4 { margin: 0 0 4px; font-size: 0.9em; color: #555; }
pre { background: #fafafa; border: 1px solid #ddd; padding: 8px; font-size: 12.5px; line-height: 1.35;
      margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
mark { background: #ffd54f; } .starter { color: #999; } .skipped { color: #a94442; } .note { color: #555; max-width: 70em; }
"""


def _word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def snap(source: str, start: int, end: int) -> tuple[int, int]:
    """Widen a span to whole names: copydetect maps filtered matches back to the source a few
    characters off (`d|ef`, `ret|urn`), which reads as noise."""
    while 0 < start < len(source) and _word_char(source[start - 1]) and _word_char(source[start]):
        start -= 1
    while 0 < end < len(source) and _word_char(source[end - 1]) and _word_char(source[end]):
        end += 1
    return start, end


def highlight(source: str, spans, starter: frozenset = frozenset()) -> str:
    """`source` HTML-escaped, line by line, with the (start, end) character spans wrapped in
    <mark>; lines of the release's starter code (`starter`, stripped) are greyed, never marked."""
    spans = sorted(snap(source, *span) for span in spans)
    out, offset = [], 0
    for line in source.splitlines(keepends=True):
        start_of_line, offset = offset, offset + len(line)
        if line.strip() and line.strip() in starter:
            out.append(f"<span class='starter'>{html.escape(line)}</span>")
            continue
        position = start_of_line
        for start, end in spans:
            start, end = max(start, position), min(end, offset)
            if end <= start:
                continue
            out += [html.escape(source[position:start]), "<mark>", html.escape(source[start:end]), "</mark>"]
            position = end
        out.append(html.escape(source[position:offset]))
    return "".join(out)


def _cell(pair: PairResult, cell: CellMatch, starter: frozenset) -> str:
    a, b = html.escape(pair.student_a), html.escape(pair.student_b)
    return (f"<h3>{html.escape(cell.item)}: {cell.similarity:.0%}</h3><div class='side'>"
            f"<div><h4>{a}</h4><pre>{highlight(cell.source_a, cell.spans_a, starter)}</pre></div>"
            f"<div><h4>{b}</h4><pre>{highlight(cell.source_b, cell.spans_b, starter)}</pre></div></div>")


def _row(rank: int, pair: PairResult, detailed: bool) -> str:
    name = f"{html.escape(pair.student_a)} &ndash; {html.escape(pair.student_b)}"
    link = f"<a href='#pair-{rank}'>{name}</a>" if detailed else name
    cells = ", ".join(f"{html.escape(c.item)} {c.similarity:.2f}" for c in pair.matching_cells()) or "&ndash;"
    bar = f"<span class='bar' style='width:{100 * pair.similarity:.0f}px'></span>"
    return (f"<tr><td class='num'>{rank}</td><td class='num'>{bar}{pair.similarity:.3f}</td>"
            f"<td>{link}</td><td>{cells}</td></tr>")


def render_html(report: SimilarityReport, top: int = 10) -> str:
    starter = {item: frozenset(line.strip() for line in source.splitlines() if line.strip())
               for item, source in report.release_cells.items()}
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Similarity of graded cells</title>",
             f"<style>{STYLE}</style></head><body><h1>Similarity of the graded cells</h1>",
             f"<p class='note'>{len(report.students)} submissions, {len(report.pairs)} pairs, compared with "
             f"copydetect (k-grams of {report.noise} tokens, every match of {report.guarantee} or more "
             "found). Names, comments and layout are ignored; the release's starter code counts for "
             "nobody (greyed below). A high score is a reason to read the two cells, not a verdict: short "
             "cells that every correct answer writes alike (tempered_softmax) match by themselves. "
             "<mark>Highlighted</mark>: code the other student's cell also has.</p>"]
    if report.skipped:
        parts.append("<p class='skipped'><b>Skipped:</b></p><ul class='skipped'>")
        parts += [f"<li>{html.escape(s.student)}: {html.escape(s.reason)}</li>" for s in report.skipped]
        parts.append("</ul>")
    parts.append("<table class='pairs'><tr><th>#</th><th>similarity</th><th>students</th>"
                 "<th>matching cells</th></tr>")
    parts += [_row(rank, pair, rank <= top) for rank, pair in enumerate(report.pairs[:TABLE_ROWS], 1)]
    parts.append("</table>")
    if len(report.pairs) > TABLE_ROWS:
        parts.append(f"<p class='note'>{len(report.pairs) - TABLE_ROWS} more pairs in similarity.csv.</p>")
    for rank, pair in enumerate(report.pairs[:top], 1):
        parts.append(f"<h2 id='pair-{rank}'>#{rank} {html.escape(pair.student_a)} &ndash; "
                     f"{html.escape(pair.student_b)}: {pair.similarity:.0%}</h2>")
        parts += [_cell(pair, cell, starter.get(cell.item, frozenset()))
                  for cell in sorted(pair.cells, key=lambda c: -c.similarity)]
    parts.append("</body></html>\n")
    return "\n".join(parts)
