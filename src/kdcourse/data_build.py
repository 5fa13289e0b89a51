"""Build the course's train/validation/test splits from CFPB complaint narratives.

Two sources, one code path:

    # the embedded copy (what `make data` runs; the committed splits come from it)
    python -m kdcourse.data_build --source data/raw/cfpb_complaints_combined_lower.csv.gz

    # the full public CFPB export, for users with internet (`make data-full`)
    python -m kdcourse.data_build --source complaints.csv --format cfpb-export --out_dir data/cfpb_full

Steps: normalise text (lower case, collapsed whitespace, the same form as the embedded copy), map
CFPB Product/Issue to the compact labels with `data/raw/label_map_issue_to_compact.json`, drop the
`other` label and texts under 5 words, deduplicate by normalised text, then split 80/10/10,
stratified by label with a fixed seed.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
from sklearn.model_selection import train_test_split

from kdcourse.data import COLUMNS, SPLITS
from kdcourse.cli import parse_config
from kdcourse.errors import UsageError, run_cli
from kdcourse.paths import DATA_DIR

LABEL_MAP_PATH = DATA_DIR / "raw" / "label_map_issue_to_compact.json"
EMBEDDED_SOURCE = DATA_DIR / "raw" / "cfpb_complaints_combined_lower.csv.gz"
# `other` is a catch-all ("Other features, terms, or problems", "Advertising and marketing"): its
# texts resemble every class, so it adds noise rather than structure. See data/README.md.
DROPPED_LABELS = ("other",)
EXPORT_COLUMNS = {  # full CFPB export column -> our column
    "Complaint ID": "complaint_id",
    "Consumer complaint narrative": "text",
    "Product": "product",
    "Issue": "issue",
    "Date received": "date_received",
}


@dataclass
class BuildConfig:
    """`make data` / `make data-full`'s options (`--name value`)."""
    source: Path = field(default=EMBEDDED_SOURCE, metadata={"help": "CSV (optionally .gz) to build from"})
    format: Literal["embedded", "cfpb-export"] = field(default="embedded", metadata={
        "help": "embedded (our combined CSV) or cfpb-export (the public complaints.csv)"})
    out_dir: Path = field(default=DATA_DIR / "cfpb", metadata={
        "help": "folder that receives train/validation/test.parquet and labels.json"})
    seed: int = field(default=42, metadata={"help": "fixes the stratified split"})
    min_words: int = field(default=5, metadata={"help": "shorter narratives carry no signal"})
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1], metadata={
        "help": "train, validation and test shares"})

    def __post_init__(self):
        if self.format not in ("embedded", "cfpb-export"):
            raise UsageError(f"format must be embedded or cfpb-export, got {self.format!r}")
        if len(self.fractions) != 3 or abs(sum(self.fractions) - 1) > 1e-9 or min(self.fractions) <= 0:
            raise UsageError(f"fractions must be three shares > 0 that sum to 1, got {self.fractions}")


def normalize_text(text: str) -> str:
    """Lower-case, drop a stray leading b' and literal \\n, collapse whitespace."""
    text = str(text).replace("\\n", " ")
    text = re.sub(r"^b['\"]", "", text.strip())
    return re.sub(r"\s+", " ", text).strip().lower()


def load_label_map(path: Path = LABEL_MAP_PATH) -> dict:
    with open(path) as f:
        return json.load(f)


def map_label(product: str, issue: str, label_map: dict) -> str:
    """CFPB (Product, Issue) -> compact label, by the rules in the label map's `_doc`."""
    product_l = str(product).strip().lower()
    for prefix, label in label_map["product_prefix_rules"].items():
        if product_l.startswith(prefix):
            return label
    return label_map["issue_to_label"].get(str(issue).strip().lower(), "other")


def label_names(label_map: dict | None = None) -> list[str]:
    """Label names in id order (the ClassLabel order): the label map's order minus dropped labels."""
    label_map = label_map or load_label_map()
    return [name for name in label_map["labels"] if name not in DROPPED_LABELS]


def read_source(path: Path, fmt: str) -> pd.DataFrame:
    """Read a source CSV into COLUMNS (label still as CFPB Product/Issue, text raw)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"data source {path} does not exist. For the embedded data run `make data`; for the "
            "full export download complaints.csv from consumerfinance.gov and pass --source."
        )
    if fmt == "embedded":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        needed = {"complaint_id", "text", "product", "issue"}
    elif fmt == "cfpb-export":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False,
                            usecols=lambda c: c in EXPORT_COLUMNS)
        missing = set(EXPORT_COLUMNS) - set(frame.columns)
        if missing:
            raise ValueError(f"{path} lacks columns {sorted(missing)} of the CFPB export "
                             f"(found {sorted(frame.columns)}); is it complaints.csv?")
        frame = frame.rename(columns=EXPORT_COLUMNS)
        frame = frame[frame["text"].str.strip() != ""]  # most complaints have no narrative
        needed = set(EXPORT_COLUMNS.values())
    else:
        raise ValueError(f"unknown source format {fmt!r}: use 'embedded' or 'cfpb-export'")
    missing = needed - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks columns {sorted(missing)} (found {sorted(frame.columns)})")
    if "date_received" not in frame:
        frame["date_received"] = ""
    return frame


def clean(frame: pd.DataFrame, label_map: dict, min_words: int) -> pd.DataFrame:
    """Normalise, label, filter and deduplicate (first complaint of each text wins)."""
    frame = frame.copy()
    frame["text"] = frame["text"].map(normalize_text)
    frame["label"] = [map_label(p, i, label_map) for p, i in zip(frame["product"], frame["issue"])]
    keep = (frame["text"].str.split().str.len() >= min_words) & ~frame["label"].isin(DROPPED_LABELS)
    frame = frame[keep].sort_values("complaint_id", kind="stable")
    frame = frame.drop_duplicates("text").drop_duplicates("complaint_id")
    return frame[COLUMNS].reset_index(drop=True)


def _strata(labels: pd.Series, min_count: int = 10) -> pd.Series | None:
    """Labels to stratify on; rare labels pooled (sklearn needs >= 2 per stratum)."""
    counts = labels.value_counts()
    strata = labels.where(labels.map(counts) >= min_count, "_rare")
    return strata if strata.value_counts().min() >= min_count else None


def stratified_split(frame: pd.DataFrame, seed: int, fractions=(0.8, 0.1, 0.1)) -> dict:
    """Split by label into train/validation/test with `fractions`; deterministic for a seed."""
    train_frac, val_frac, test_frac = fractions
    train, rest = train_test_split(frame, train_size=train_frac, stratify=_strata(frame["label"]),
                                   random_state=seed)
    validation, test = train_test_split(rest, test_size=test_frac / (val_frac + test_frac),
                                        stratify=_strata(rest["label"], 2), random_state=seed)
    return {name: part.sort_values("complaint_id", kind="stable").reset_index(drop=True)
            for name, part in zip(SPLITS, (train, validation, test))}


def build(config: BuildConfig) -> dict:
    """Run every step and write `<out_dir>/<split>.parquet`; returns the split frames."""
    label_map = load_label_map()
    frame = clean(read_source(config.source, config.format), label_map, config.min_words)
    splits = stratified_split(frame, config.seed, config.fractions)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in splits.items():
        part.to_parquet(config.out_dir / f"{name}.parquet", index=False)
    (config.out_dir / "labels.json").write_text(json.dumps(label_names(label_map), indent=1) + "\n")
    return splits


def main(argv=None):
    (config,) = parse_config(BuildConfig, argv, description=__doc__.splitlines()[0])
    splits = build(config)
    for name, part in splits.items():
        print(f"{name:>10}: {len(part):5d} rows -> {config.out_dir / (name + '.parquet')}")


if __name__ == "__main__":
    run_cli(main)
