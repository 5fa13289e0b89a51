"""Profiles are selected by name, extend each other, and reject what they don't know."""
from pathlib import Path

import pytest

from kdcourse.profiles import get_profile


def test_builtin_profiles():
    assert all(get_profile(name).name == name for name in ("cpu", "gpu", "smoke"))
    gpu = get_profile("gpu")
    assert (gpu.teacher, gpu.student) == ("answerdotai/ModernBERT-large", "answerdotai/ModernBERT-base")
    assert gpu.precision == "bf16" and not gpu.builds_tiny_models
    assert get_profile("cpu").builds_tiny_models


def test_extends_copies_then_overrides():
    smoke, cpu = get_profile("smoke"), get_profile("cpu")
    assert smoke.student_lr == cpu.student_lr  # inherited
    assert smoke.max_length < cpu.max_length  # overridden
    assert smoke.description != cpu.description


def test_user_profiles_file(tmp_path, monkeypatch):
    mine = tmp_path / "mine.toml"
    mine.write_text('[laptop]\nextends = "cpu"\nmax_length = 96\nstudent_epochs = 1\n')
    monkeypatch.setenv("KD_PROFILES", str(mine))
    laptop = get_profile("laptop")
    assert (laptop.max_length, laptop.student_epochs, laptop.name) == (96, 1, "laptop")


def test_overrides_at_call_time():
    assert get_profile("cpu", max_train_samples=50).max_train_samples == 50


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown profile 'nope'.*cpu.*gpu"):
        get_profile("nope")


def test_unknown_key_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "bad.toml"
    bad.write_text('[typo]\nextends = "cpu"\nmax_lenght = 96\n')
    monkeypatch.setenv("KD_PROFILES", str(bad))
    with pytest.raises(ValueError, match="unknown keys \\['max_lenght'\\]"):
        get_profile("typo")


def test_bad_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be"):
        get_profile("cpu", precision="fp8")


@pytest.mark.parametrize("argv, message", [
    (["solutions/reference/run_reference.py", "--profile", "nonexistent"], "unknown profile 'nonexistent'"),
    (["solutions/reference/run_reference.py", "--profile", "smoke", "--temperature", "-1"],
     "temperatures must be > 0"),
    (["-m", "kdcourse.teacher", "--profile", "nonexistent"], "unknown profile 'nonexistent'")],
    ids=["unknown-profile", "negative-temperature", "teacher-unknown-profile"])
def test_a_users_mistake_is_one_line_and_exit_status_2(argv, message):
    """No traceback for the project's own errors: one line on stderr, status 2 (as argparse)."""
    import subprocess
    import sys
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, *argv], cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
