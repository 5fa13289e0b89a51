"""How alike the graded cells of every pair of submissions are: MOSS-style fingerprints (copydetect).

    make similarity SUBMISSIONS=exports/ OUT=similarity/
    python -m autograder.similarity exports/ --out_dir similarity/ [--top 10]

For each graded cell (`autograder.ITEMS`) of each submission (<SUBMISSIONS>/<student_id>/distillation.ipynb),
copydetect tokenizes the code (names become V, strings S, comments and layout vanish, so renaming
and re-commenting change nothing), hashes every k-gram of the tokens and keeps the winnowed ones.
The release's cell (signature, docstring, stub) is boilerplate: its k-grams count for nobody. Two
cells' similarity is the share of both cells' fingerprinted tokens that the other cell also has;
a pair's similarity weighs its cells by their size, so a two-line cell that every correct answer
writes alike does not dominate.

Writes OUT/similarity.csv (student_a, student_b, similarity, the cells that match, one column per
cell), highest first; OUT/similarity.html (the pairs side by side, matches highlighted) and prints
the top pairs. A missing or unreadable notebook is skipped and named, never fatal.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import copydetect.utils
import numpy as np
from copydetect import CodeFingerprint, compare_files

from autograder import ITEMS
from autograder.grade import NOTEBOOK, find_students
from autograder.similarity_html import render_html
from kdcourse.cli import parse_config
from kdcourse.errors import run_cli
from kdcourse.notebook import NotebookError, graded_cells
from kdcourse.paths import RELEASE_NOTEBOOK, move_to_history

# copydetect's two thresholds (its defaults), in filtered characters, one per name (`V`): a match
# shorter than NOISE is ignored, one at least GUARANTEE long is always found. On the test sets
# (tests/test_similarity.py) they separate planted copies from independent answers best of
# 10/15 to 30/35: copies 0.91, independent pairs at most 0.37 (0.51 at 10/15).
NOISE = 25
GUARANTEE = 30
CELL_MATCH = 0.5  # a cell is listed as matching from this similarity on
OUTPUTS = ("similarity.csv", "similarity.html")
CSV_HEADER = ["student_a", "student_b", "similarity", "matching_cells", *ITEMS]


@dataclass(frozen=True)
class Skipped:
    """A student folder whose notebook could not be compared, and why."""
    student: str
    reason: str


@dataclass
class Submission:
    """The graded cells of one student: {item: source}, and their fingerprints."""
    student: str
    cells: dict[str, str]
    fingerprints: dict[str, CodeFingerprint] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class CellMatch:
    """One graded cell of a pair: its similarity and the matched character ranges of each side."""
    item: str
    similarity: float
    source_a: str
    source_b: str
    spans_a: tuple[tuple[int, int], ...]  # (start, end) in source_a
    spans_b: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PairResult:
    student_a: str
    student_b: str
    similarity: float  # 0..1, both sides' matched tokens over both sides' fingerprinted tokens
    cells: tuple[CellMatch, ...]

    def matching_cells(self) -> list[CellMatch]:
        return sorted((c for c in self.cells if c.similarity >= CELL_MATCH), key=lambda c: -c.similarity)

    def csv_row(self) -> list:
        by_item = {c.item: f"{c.similarity:.3f}" for c in self.cells}
        matching = "; ".join(f"{c.item} ({c.similarity:.2f})" for c in self.matching_cells())
        return [self.student_a, self.student_b, f"{self.similarity:.3f}", matching,
                *(by_item.get(item, "") for item in ITEMS)]


@dataclass(frozen=True)
class SimilarityReport:
    """Every compared pair (highest similarity first) and the skipped students."""
    students: tuple[str, ...]
    pairs: tuple[PairResult, ...]
    skipped: tuple[Skipped, ...]
    release_cells: dict = field(default_factory=dict, repr=False)  # {item: starter code}, for the HTML
    noise: int = NOISE
    guarantee: int = GUARANTEE

    def to_json(self) -> dict:
        return {"students": list(self.students), "skipped": [asdict(s) for s in self.skipped],
                "noise": self.noise, "guarantee": self.guarantee,
                "pairs": [{"student_a": p.student_a, "student_b": p.student_b,
                           "similarity": p.similarity,
                           "cells": {c.item: c.similarity for c in p.cells}} for p in self.pairs]}

    def write_csv(self, path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_HEADER)
            writer.writerows(pair.csv_row() for pair in self.pairs)

    def summary(self, top: int = 10) -> str:
        lines = [f"compared {len(self.students)} submissions ({len(self.pairs)} pairs)"]
        lines += [f"skipped {s.student}: {s.reason}" for s in self.skipped]
        lines.append(f"top {min(top, len(self.pairs))} pairs (similarity, students, matching cells):")
        for pair in self.pairs[:top]:
            cells = ", ".join(f"{c.item} {c.similarity:.2f}" for c in pair.matching_cells()) or "-"
            lines.append(f"  {pair.similarity:.3f}  {pair.student_a}  {pair.student_b}  ({cells})")
        return "\n".join(lines)


def stable_hashed_kgrams(string: str, k: int) -> np.ndarray:
    """copydetect's hashed_kgrams with a fixed hash (8 bytes of BLAKE2b) instead of Python's
    hash(), which is salted per process: the winnowed fingerprints, and so every score, would
    change from one run to the next."""
    return np.array([int.from_bytes(hashlib.blake2b(string[i:i + k].encode(), digest_size=8).digest(),
                                    "little", signed=True) for i in range(len(string) - k + 1)],
                    dtype=np.int64)


@contextlib.contextmanager
def stable_hashes():
    """copydetect fingerprints with `stable_hashed_kgrams` inside the block."""
    original = copydetect.utils.hashed_kgrams
    copydetect.utils.hashed_kgrams = stable_hashed_kgrams
    try:
        yield
    finally:
        copydetect.utils.hashed_kgrams = original


def fingerprint(source: str, boilerplate=None) -> CodeFingerprint:
    return CodeFingerprint("cell.py", NOISE, GUARANTEE - NOISE + 1, boilerplate=boilerplate,
                           language="python", fp=io.StringIO(source))


def boilerplate_hashes(release_cells: dict[str, str]) -> dict[str, list[int]]:
    """{item: every k-gram hash of the release's cell}, as copydetect builds boilerplate (window 1)."""
    return {item: sorted(CodeFingerprint("cell.py", NOISE, 1, language="python",
                                         fp=io.StringIO(release_cells.get(item, ""))).hashes)
            for item in ITEMS}


def load_submissions(folder: Path) -> tuple[list[Submission], list[Skipped]]:
    """The graded cells of every <folder>/<student>/distillation.ipynb; the others, skipped."""
    submissions, skipped = [], []
    for student in find_students(Path(folder)):
        path = Path(folder) / student / NOTEBOOK
        if not path.is_file():
            names = sorted(p.name for p in path.parent.iterdir())[:5]
            skipped.append(Skipped(student, f"no {NOTEBOOK} (found: {', '.join(names) or 'nothing'})"))
            continue
        try:
            cells = graded_cells(path)
        except NotebookError as err:
            skipped.append(Skipped(student, str(err)))
            continue
        cells = {item: cells[item] for item in ITEMS if item in cells}
        if not cells:
            skipped.append(Skipped(student, f"no graded cell (grade_ids {', '.join(ITEMS)}) in {NOTEBOOK}"))
            continue
        submissions.append(Submission(student, cells))
    return submissions, skipped


def _spans(slices) -> tuple[tuple[int, int], ...]:
    if len(slices) == 0 or len(slices[0]) == 0:
        return ()
    return tuple((int(start), int(end)) for start, end in zip(slices[0], slices[1]))


def compare_pair(a: Submission, b: Submission) -> PairResult:
    """Cells both students wrote, compared one by one; the pair's similarity weighs them by size."""
    cells, matched, total = [], 0.0, 0.0
    for item in ITEMS:
        fa, fb = a.fingerprints.get(item), b.fingerprints.get(item)
        if fa is None or fb is None:
            continue
        _, (sim_a, sim_b), (slices_a, slices_b) = compare_files(fa, fb)
        size = fa.token_coverage + fb.token_coverage
        both = sim_a * fa.token_coverage + sim_b * fb.token_coverage
        matched, total = matched + both, total + size
        cells.append(CellMatch(item, float(both / size) if size else 0.0, a.cells[item], b.cells[item],
                               _spans(slices_a), _spans(slices_b)))
    return PairResult(a.student, b.student, float(matched / total) if total else 0.0, tuple(cells))


def compare_folder(folder: Path, release: Path = RELEASE_NOTEBOOK) -> SimilarityReport:
    submissions, skipped = load_submissions(folder)
    release_cells = {item: source for item, source in graded_cells(release).items() if item in ITEMS}
    with stable_hashes():
        boilerplate = boilerplate_hashes(release_cells)
        for sub in submissions:
            sub.fingerprints = {item: fingerprint(source, boilerplate[item])
                                for item, source in sub.cells.items()}
    pairs = [compare_pair(a, b) for a, b in itertools.combinations(submissions, 2)]
    pairs.sort(key=lambda p: (-p.similarity, p.student_a, p.student_b))
    return SimilarityReport(tuple(s.student for s in submissions), tuple(pairs), tuple(skipped),
                            release_cells)


@dataclass
class SimilarityConfig:
    """`python -m autograder.similarity SUBMISSIONS --out_dir OUT` (SUBMISSIONS is positional)."""
    out_dir: Path = field(metadata={"help": "folder that receives similarity.csv and similarity.html"})
    top: int = field(default=10, metadata={"help": "pairs printed, and shown in full in the HTML"})


def main(argv=None) -> SimilarityReport:
    cfg, args = parse_config(SimilarityConfig, argv, description=__doc__.split("\n\n")[0],
                             prog="autograder.similarity",
                             positional={"submissions": f"folder of <student_id>/{NOTEBOOK}"})
    report = compare_folder(Path(args.submissions))
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    move_to_history(cfg.out_dir, OUTPUTS)  # an earlier report is kept, not overwritten
    csv_path, html_path = (cfg.out_dir / name for name in OUTPUTS)
    report.write_csv(csv_path)
    html_path.write_text(render_html(report, top=max(cfg.top, 1)), encoding="utf-8")
    print(f"wrote {csv_path} and {html_path}")
    print(report.summary(cfg.top))
    return report


if __name__ == "__main__":
    run_cli(main)
    sys.exit(0)
