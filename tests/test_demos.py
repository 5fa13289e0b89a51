"""The dark-knowledge demos' package code: the 2-D toy, the omitted class and its bias fix, and the
out-of-fold soft labels' bookkeeping (folds, manifest, refusals). No model is trained here except
the toy's 9-parameter students; the fold teachers are stood in for by files."""
import json
import time

import pytest
import torch

from kdcourse import demo_plots, oof, oof_train, toy
from kdcourse.logits_cache import StaleCacheError, dataset_fingerprint, save_logits, tokenizer_fingerprint
from kdcourse.notebook import load_graded_functions
from kdcourse.omitted import (OmittedLogits, bias_to_match, label_index, missing_from, omitted_class_result,
                              summarise, without_class)
from kdcourse.paths import SOLUTION_NOTEBOOK


@pytest.fixture(scope="module")
def graded():
    return load_graded_functions(SOLUTION_NOTEBOOK)


# ---------------------------------------------------------------- the 2-D toy
def test_toy_runs_fast_uses_the_given_loss_and_reports_every_number(graded):
    calls = []

    def counting_loss(*args):
        calls.append(args[3:])  # (temperature, alpha)
        return graded.distillation_loss(*args)

    start = time.perf_counter()
    result = toy.run_toy(graded.tempered_softmax, counting_loss, seed=0, grid_steps=40)
    seconds = time.perf_counter() - start
    cfg = result.config
    assert {(1.0, 0.0), (cfg.temperature, cfg.alpha)} == set(calls), "both students train with the given loss"
    assert len(calls) == 2 * cfg.student_steps
    for score in (result.hard, result.distilled):
        assert 0.9 < score.accuracy <= 1 and 0 <= score.agreement <= 1 and score.kl_to_teacher >= 0
    assert result.maps["teacher"].shape == (40, 40, 3)
    assert torch.allclose(result.maps["distilled"].sum(-1), torch.ones(40, 40), atol=1e-5)
    assert seconds < 15, f"the toy took {seconds:.1f} s (budget 15 s on 2 cores)"
    assert json.dumps(result.to_json())
    assert demo_plots.plot_toy_maps(result) is not None


def test_toy_summary_lists_every_seed(graded):
    results = [toy.run_toy(graded.tempered_softmax, graded.distillation_loss, seed=s, grid_steps=10)
               for s in (0, 1)]
    summary = toy.summarise(results)
    assert summary["seeds"] == [0, 1]
    assert summary["hard"]["agreement"] == [r.hard.agreement for r in results]
    assert set(summary["distilled"]) == {"accuracy", "agreement", "kl_to_teacher"}


def test_toy_agreement_counts_points_within_the_tolerance():
    teacher = torch.tensor([[0.6, 0.4, 0.0], [1.0, 0.0, 0.0]])
    student = torch.tensor([[0.65, 0.35, 0.0], [0.5, 0.5, 0.0]])
    score = toy.score(student, teacher, torch.tensor([0, 0]), tolerance=0.1)
    assert score.agreement == 0.5 and score.accuracy == 1.0


# ---------------------------------------------------------------- the omitted class
def test_bias_to_match_is_the_smallest_shift_that_reaches_the_count():
    logits = torch.tensor([[2.0, 0.0], [1.0, 0.5], [3.0, -1.0], [0.0, 1.0]])  # column 1 is the class
    assert bias_to_match(logits, 1, 1) == 0.0  # row 3 already predicts it
    shift = bias_to_match(logits, 1, 2)  # next margin: row 1, 1.0 - 0.5 = 0.5
    assert 0.5 < shift < 0.501
    shifted = logits.clone()
    shifted[:, 1] += shift
    assert int((shifted.argmax(-1) == 1).sum()) == 2
    assert bias_to_match(logits, 1, 0) == 0.0


def test_omitted_class_result_on_known_logits():
    c = 2
    labels = torch.tensor([2, 2, 0, 1])
    teacher = torch.tensor([[0, 0, 5.0], [0, 0, 5.0], [5.0, 0, 0], [0, 5.0, 0]])
    hard = torch.tensor([[1.0, 0, -9], [1.0, 0, -9], [1.0, 0, -9], [0, 1.0, -9]])
    distilled = torch.tensor([[1.0, 0, 0.8], [1.0, 0, -1], [1.0, 0, -5], [0, 1.0, -5]])
    logits = OmittedLogits(teacher_val=teacher, teacher_test=teacher, hard_val=hard, hard_test=hard,
                           distilled_val=distilled, distilled_test=distilled, test_labels=labels)
    result = omitted_class_result("c2", c, logits, seed=3)
    assert (result.teacher_recall, result.hard_recall, result.distilled_recall) == (1.0, 0.0, 0.0)
    # the teacher predicts class 2 twice on validation: the distilled student needs +2.0 (row 1's margin)
    assert result.distilled_recall_bias_fixed == 1.0 and 2.0 < result.distilled_bias_shift < 2.01
    assert result.distilled_mean_prob > result.hard_mean_prob
    summary = summarise([result, result])
    assert summary["label"] == "c2" and summary["distilled_recall_bias_fixed"] == [1.0, 1.0]
    assert summary["std"]["teacher_recall"] == 0.0


def test_omitted_class_bad_input_is_named(smoke_splits, label_names):
    with pytest.raises(ValueError, match="is not a label; pick one of"):
        label_index("debt", label_names)
    train = smoke_splits["train"]
    kept = without_class(train, label_index("payment_problem", label_names))
    assert len(kept) < len(train) and 1 not in kept["label"]
    with pytest.raises(ValueError, match="does not occur in the transfer set"):
        without_class(kept, 1)
    assert missing_from(1, training=kept["label"], test=[0, 1]) == ["training"]


# ---------------------------------------------------------------- out-of-fold bookkeeping
def test_folds_are_stratified_and_cover_every_example():
    labels = [0] * 30 + [1] * 9 + [2] * 3
    folds = oof.fold_of_each(labels, 3, seed=0)
    for label in (0, 1, 2):
        counts = [sum(1 for y, f in zip(labels, folds) if y == label and f == k) for k in range(3)]
        assert max(counts) - min(counts) <= 1, counts
    assert folds == oof.fold_of_each(labels, 3, seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        oof.fold_of_each(labels, 1, seed=0)


def _fake_fold_set(profile, train, tokenizer, folds: int, done: int):
    """A fold-teacher folder as train_fold_teachers leaves it, with `done` of `folds` folds."""
    folder = oof.oof_dir(profile, folds)
    assignment = oof.fold_of_each(list(train["label"]), folds, seed=0)
    manifest = {"folds": folds, "seed": 0, "data": dataset_fingerprint(train),
                "tokenizer": tokenizer_fingerprint(tokenizer), "max_length": profile.max_length, "done": {}}
    for k in range(done):
        rows = [i for i, f in enumerate(assignment) if f == k]
        fold = folder / f"fold-{k}"
        fold.mkdir(parents=True)
        (fold / "model.safetensors").write_bytes(f"weights {k}".encode())
        save_logits(fold / "held_out_logits.safetensors", torch.full((len(rows), 8), float(k)), "fold")
        torch.save(torch.tensor(rows), fold / "held_out_rows.pt")
        manifest["done"][str(k)] = {"weights": oof._file_digest(fold / "model.safetensors")}
    oof._write_manifest(folder, manifest)
    return folder, assignment


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    import kdcourse.models
    import kdcourse.paths
    monkeypatch.setattr(kdcourse.models, "CHECKPOINT_DIR", tmp_path / "checkpoints")
    monkeypatch.setattr(kdcourse.paths, "CACHE_DIR", tmp_path / "cache")
    return tmp_path


def test_oof_logits_assemble_in_training_order(isolated, smoke_profile, smoke_splits, smoke_tokenizer):
    train = smoke_splits["train"]
    folder, assignment = _fake_fold_set(smoke_profile, train, smoke_tokenizer, 2, done=2)
    logits = oof.load_oof_logits(smoke_profile, train, smoke_tokenizer, folds=2)
    assert logits.shape == (len(train), 8)
    assert logits[:, 0].tolist() == [float(f) for f in assignment], "row i holds its own fold's prediction"
    manifest = json.loads((folder / oof.MANIFEST).read_text())
    path = oof.oof_cache_path(smoke_profile, manifest)
    assert path.exists() and path.name == f"oof-k2-train-{oof.oof_fingerprint(manifest)}.safetensors"


def test_oof_refuses_a_missing_partial_stale_or_changed_set(isolated, smoke_profile, smoke_splits,
                                                             smoke_tokenizer):
    train = smoke_splits["train"]
    with pytest.raises(FileNotFoundError, match='ARGS="--folds 3"'):
        oof.load_oof_logits(smoke_profile, train, smoke_tokenizer, folds=3)
    folder, _ = _fake_fold_set(smoke_profile, train, smoke_tokenizer, 3, done=2)
    with pytest.raises(StaleCacheError, match=r"partial: folds \[2\] of 3"):
        oof.load_oof_logits(smoke_profile, train, smoke_tokenizer, folds=3)
    _fake_fold_set(smoke_profile, train, smoke_tokenizer, 2, done=2)
    with pytest.raises(StaleCacheError, match="other training data"):
        oof.load_oof_logits(smoke_profile, train.select(range(50)), smoke_tokenizer, folds=2)
    oof.load_oof_logits(smoke_profile, train, smoke_tokenizer, folds=2)  # writes the cache
    (oof.oof_dir(smoke_profile, 2) / "fold-1" / "model.safetensors").write_bytes(b"retrained")
    with pytest.raises(StaleCacheError, match="was changed after"):
        oof.load_oof_logits(smoke_profile, train, smoke_tokenizer, folds=2)


def test_fold_predictions_keep_the_row_order(smoke_profile, smoke_splits, smoke_tokenizer, label_names):
    """Row i of the held-out logits is example i's (Trainer.predict length-groups, so it is not used)."""
    from kdcourse.data import tokenize_splits
    from kdcourse.models import load_teacher_init
    data = tokenize_splits(smoke_splits, smoke_tokenizer, 256)["train"].select(range(24))  # lengths vary
    assert len(set(data["length"])) > 1, "the check needs texts of several lengths"
    model = load_teacher_init(smoke_profile, label_names, smoke_tokenizer, seed=0).eval()
    logits = oof_train.predict_in_order(model, data, smoke_tokenizer, batch_size=8)
    with torch.inference_mode():
        one_by_one = torch.cat([model(input_ids=torch.tensor([row["input_ids"]]),
                                      attention_mask=torch.ones(1, len(row["input_ids"]), dtype=torch.long)).logits
                                for row in data])
    torch.testing.assert_close(logits, one_by_one, atol=1e-4, rtol=1e-4)
