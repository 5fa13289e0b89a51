"""The complaint splits: determinism, no leakage, stable labels, loading errors, batching."""
import json

import pandas as pd
import pytest
import torch

from kdcourse import data_build
from kdcourse.data import (LengthGroupedBatchSampler, PadCollator, load_label_names, load_splits,
                           make_loader, tokenize_splits, with_teacher_logits)
from kdcourse.paths import DATA_DIR, REPO_ROOT

EXPECTED_LABELS = ["billing_dispute", "payment_problem", "account_management", "fees_interest",
                   "fraud_unauthorized", "credit_reporting", "debt_collection",
                   "new_account_or_loan"]


@pytest.fixture(scope="module")
def committed():
    return {s: pd.read_parquet(DATA_DIR / "cfpb" / f"{s}.parquet") for s in data_build.SPLITS}


def test_rebuild_reproduces_the_committed_splits(tmp_path, committed):
    """`make data` from the embedded source gives byte-for-byte the same rows."""
    data_build.build(data_build.BuildConfig(out_dir=tmp_path))
    for split, frame in committed.items():
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"{split}.parquet"), frame)
    assert json.loads((tmp_path / "labels.json").read_text()) == EXPECTED_LABELS


def test_no_text_or_complaint_appears_in_two_splits(committed):
    for column in ("text", "complaint_id"):
        seen = {}
        for split, frame in committed.items():
            assert frame[column].is_unique, f"duplicate {column} inside {split}"
            for value in frame[column]:
                assert seen.setdefault(value, split) == split, f"{column} in {seen[value]} and {split}"


def test_splits_are_stratified_80_10_10(committed):
    total = sum(len(f) for f in committed.values())
    assert abs(len(committed["train"]) / total - 0.8) < 0.01
    shares = {s: f["label"].value_counts(normalize=True) for s, f in committed.items()}
    for label in EXPECTED_LABELS:
        assert abs(shares["train"][label] - shares["test"][label]) < 0.01, label


def test_label_ids_are_stable():
    splits = load_splits(max_samples={"train": 5, "validation": 5, "test": 5})
    assert load_label_names() == EXPECTED_LABELS
    assert splits["train"].features["label"].names == EXPECTED_LABELS
    assert splits["train"].features["label"].str2int("fees_interest") == 3


def test_cfpb_export_format_builds_with_the_same_code(tmp_path):
    """`make data-full` code path, on a 62-row fixture in the public export's columns."""
    source = REPO_ROOT / "tests" / "fixtures" / "cfpb_export_sample.csv"
    splits = data_build.build(data_build.BuildConfig(source=source, format="cfpb-export",
                                                     out_dir=tmp_path))
    rows = pd.concat(splits.values())
    assert 30 < len(rows) < 62  # empty narratives and `other` dropped
    assert set(rows["label"]) <= set(EXPECTED_LABELS)
    assert list(rows.columns) == data_build.COLUMNS
    assert (rows["text"] == rows["text"].str.lower()).all()


def test_export_with_wrong_columns_names_them(tmp_path):
    bad = tmp_path / "complaints.csv"
    bad.write_text("Product,Issue\nMortgage,Other\n")
    with pytest.raises(ValueError, match="Consumer complaint narrative"):
        data_build.build(data_build.BuildConfig(source=bad, format="cfpb-export", out_dir=tmp_path))


def test_missing_source_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="make data"):
        data_build.read_source(tmp_path / "nope.csv", "embedded")


def test_missing_split_file_says_make_data(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps(EXPECTED_LABELS))
    with pytest.raises(FileNotFoundError, match="make data"):
        load_splits(tmp_path)


def test_split_with_wrong_columns_is_refused(tmp_path, committed):
    (tmp_path / "labels.json").write_text(json.dumps(EXPECTED_LABELS))
    for split in data_build.SPLITS:
        committed[split].drop(columns=["text"]).to_parquet(tmp_path / f"{split}.parquet")
    with pytest.raises(ValueError, match="lacks columns \\['text'\\]"):
        load_splits(tmp_path)


@pytest.mark.parametrize("text, expected", [
    ("  Hello\\nWORLD  ", "hello world"), ("b'My card", "my card"), ("a\t\tb", "a b")])
def test_normalize_text(text, expected):
    assert data_build.normalize_text(text) == expected


def test_label_mapping_rules():
    label_map = data_build.load_label_map()
    assert data_build.map_label("Debt collection", "Anything", label_map) == "debt_collection"
    assert data_build.map_label("Credit card", "Fees or interest", label_map) == "fees_interest"
    assert data_build.map_label("Credit card", "Something new", label_map) == "other"


# ------------------------------------------------------------------ batching
def items(lengths, with_logits=False):
    out = [{"input_ids": list(range(1, n + 1)), "label": i % 3} for i, n in enumerate(lengths)]
    for item in out if with_logits else []:
        item["teacher_logits"] = [0.1, 0.2, 0.3]
    return out


def test_collator_pads_to_the_longest_in_the_batch():
    batch = PadCollator(pad_token_id=0)(items([3, 5, 2], with_logits=True))
    assert batch["input_ids"].shape == (3, 5)
    assert batch["attention_mask"].sum(1).tolist() == [3, 5, 2]
    assert batch["input_ids"][2].tolist() == [1, 2, 0, 0, 0]
    assert batch["labels"].tolist() == [0, 1, 2]
    assert batch["teacher_logits"].dtype == torch.float32 and batch["teacher_logits"].shape == (3, 3)


def test_collator_can_round_up_to_a_multiple():
    assert PadCollator(0, pad_to_multiple_of=8)(items([3, 9]))["input_ids"].shape == (2, 16)


def test_length_grouped_sampler_covers_every_index_once_and_reshuffles():
    lengths = torch.randint(1, 200, (1000,), generator=torch.Generator().manual_seed(0)).tolist()
    sampler = LengthGroupedBatchSampler(lengths, batch_size=16, group_size=8, seed=0)
    first, second = list(sampler), list(sampler)
    assert sorted(i for b in first for i in b) == list(range(1000))
    assert len(first) == len(sampler) == 63
    assert first != second, "a new epoch should bring a new order"
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first) / len(first)
    assert spread < 30, f"batches should hold similar lengths, mean spread {spread:.0f}"


def padding_waste(loader) -> float:
    """Share of token slots in the loader's batches that are padding (0 = none)."""
    real = total = 0
    for batch in loader:
        real += int(batch["attention_mask"].sum())
        total += batch["attention_mask"].numel()
    return 1 - real / total if total else 0.0


def test_grouping_by_length_cuts_padding_waste(smoke_splits, smoke_tokenizer):
    tokenized = tokenize_splits(smoke_splits, smoke_tokenizer, max_length=512)
    grouped = make_loader(tokenized["train"], smoke_tokenizer, 8, shuffle=True)
    plain = make_loader(tokenized["train"], smoke_tokenizer, 8, shuffle=True, group_by_length=False)
    assert padding_waste(grouped) < padding_waste(plain)


def test_loader_keeps_order_and_carries_teacher_logits(smoke_splits, smoke_tokenizer):
    tokenized = tokenize_splits(smoke_splits, smoke_tokenizer, max_length=64)["train"]
    logits = torch.randn(len(tokenized), len(EXPECTED_LABELS))
    loader = make_loader(with_teacher_logits(tokenized, logits), smoke_tokenizer, batch_size=10)
    batches = list(loader)
    assert torch.equal(torch.cat([b["teacher_logits"] for b in batches]), logits)
    assert torch.cat([b["labels"] for b in batches]).tolist() == tokenized["label"]
    assert set(batches[0]) == {"input_ids", "attention_mask", "labels", "teacher_logits"}


def test_teacher_logits_of_the_wrong_length_are_refused(smoke_splits):
    with pytest.raises(ValueError, match="rows but the dataset has"):
        with_teacher_logits(smoke_splits["train"], torch.zeros(3, 8))
