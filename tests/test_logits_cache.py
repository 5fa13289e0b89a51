"""Cached logits are reused only for the same data, tokenizer and teacher, and never lost."""
import pytest
import torch

from kdcourse.logits_cache import (StaleCacheError, cached_logits, load_logits, logits_fingerprint,
                                   model_fingerprint)


def test_computed_once_then_loaded(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return torch.randn(5, 3)

    path = tmp_path / "train.safetensors"
    first = cached_logits(path, "fp1", compute)
    second = cached_logits(path, "fp1", compute)
    assert len(calls) == 1
    torch.testing.assert_close(first, second)


def test_a_stale_cache_is_refused_and_kept(tmp_path):
    path = tmp_path / "train.safetensors"
    cached_logits(path, logits_fingerprint(data="a", teacher="t1"), lambda: torch.zeros(2, 3))
    with pytest.raises(StaleCacheError, match="Delete or move the file"):
        cached_logits(path, logits_fingerprint(data="a", teacher="t2"), lambda: torch.ones(2, 3))
    assert path.exists()


def test_a_corrupt_cache_is_refused_and_kept(tmp_path):
    path = tmp_path / "train.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(StaleCacheError, match="unreadable"):
        load_logits(path, "fp")
    assert path.read_bytes() == b"not a safetensors file"


def test_model_fingerprint_sees_every_weight(smoke_profile, smoke_tokenizer, label_names):
    from kdcourse.models import load_student
    model = load_student(smoke_profile, label_names, smoke_tokenizer, seed=0)
    before = model_fingerprint(model)
    assert model_fingerprint(model) == before
    with torch.no_grad():
        next(model.parameters())[0, 0] += 1e-3
    assert model_fingerprint(model) != before


def test_a_stale_cache_can_be_moved_aside_not_deleted(tmp_path):
    from kdcourse.logits_cache import move_stale_aside, save_logits
    path = save_logits(tmp_path / "train.safetensors", torch.ones(2, 3), "old")
    assert move_stale_aside(path, "old") is None and path.exists()
    aside = move_stale_aside(path, "new")
    assert aside.name == "train.safetensors.stale-old" and not path.exists()
    torch.testing.assert_close(load_logits(aside, "old"), torch.ones(2, 3))


def test_a_corrupt_or_repeated_stale_cache_is_moved_aside_without_overwriting(tmp_path):
    """--recompute_stale_cache on an unreadable file, twice: both files are kept under new names."""
    from kdcourse.logits_cache import move_stale_aside
    path = tmp_path / "train.safetensors"
    for content in (b"first broken file", b"second broken file"):
        path.write_bytes(content)
        assert move_stale_aside(path, "fp") is not None and not path.exists()
    assert (tmp_path / "train.safetensors.stale-unreadable").read_bytes() == b"first broken file"
    assert (tmp_path / "train.safetensors.stale-unreadable.2").read_bytes() == b"second broken file"


def test_the_notebook_names_its_soft_label_caches_as_the_package_does():
    """One naming for soft-label caches: the notebook's cache cell builds (or calls)
    paths.soft_label_cache's <split>-<fingerprint> name, as the reference run does."""
    import json

    from kdcourse import paths
    from kdcourse.notebook import cell_source
    cells = [cell_source(c) for c in json.loads(paths.SOLUTION_NOTEBOOK.read_text())["cells"]
             if "cached_logits(" in cell_source(c)]
    assert cells, "no cell of the solution notebook caches the teacher's logits"
    inline = 'CACHE_DIR / "logits" / profile.name / f"{split}-{fingerprint}.safetensors"'
    for source in cells:
        assert "soft_label_cache(" in source or inline in source, source
    assert paths.soft_label_cache("cpu", "train", "f00d") == paths.CACHE_DIR / "logits" / "cpu" / "train-f00d.safetensors"
