"""The paths the TA tools had before they moved to `kdcourse.perf` still work, and say they moved:
`python -m kdcourse.bench` (traffic, full_size), `solutions/reference/bench.py`, old imports, and
the output flag `--out FILE.json` of bench and traffic."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command, new", [
    (["-m", "kdcourse.bench"], "kdcourse.perf.bench"),
    (["-m", "kdcourse.traffic"], "kdcourse.perf.traffic"),
    (["-m", "kdcourse.full_size"], "kdcourse.perf.full_size"),
    ([str(REPO / "solutions" / "reference" / "bench.py")], "kdcourse.perf.bench"),
])
def test_old_commands_print_one_deprecation_line_and_run_the_new_module(command, new):
    done = subprocess.run([sys.executable, *command, "--help"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    warning_lines = [line for line in done.stderr.splitlines() if "deprecated" in line]
    assert len(warning_lines) == 1 and f"python -m {new}" in warning_lines[0], done.stderr[-2000:]
    assert "--profile" in done.stdout  # the new module's own help


@pytest.mark.parametrize("old, name, new", [
    ("kdcourse.bench", "format_table", "kdcourse.perf.report"),
    ("kdcourse.bench", "BenchConfig", "kdcourse.perf.bench"),
    ("kdcourse.bench", "flops_per_sequence", "kdcourse.perf.flops"),
    ("kdcourse.traffic", "record_kernels", "kdcourse.perf.inductor_bytes"),
    ("kdcourse.full_size", "FullSizeConfig", "kdcourse.perf.full_size"),
    ("kdcourse.profiling", "Timer", "kdcourse.perf.profiling"),
    ("kdcourse.packing", "pack_by_length", "kdcourse.perf.packing"),
    ("kdcourse.attention", "register", "kdcourse.perf.attention"),
])
def test_old_imports_warn_and_give_the_moved_names(old, name, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to kdcourse.perf"):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        module.no_such_name


def test_master_weights_old_name_warns_and_gives_the_moved_class():
    from kdcourse import utils
    from kdcourse.perf.master_weights import MasterWeights
    with pytest.warns(DeprecationWarning, match="kdcourse.utils.MasterWeights moved to kdcourse.perf"):
        assert utils.MasterWeights is MasterWeights
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        utils.no_such_name


@pytest.mark.parametrize("module", ["bench", "traffic"])
def test_the_old_out_file_flag_still_names_the_file(module, tmp_path, monkeypatch, capsys):
    """`--out results.json` named a file: it is read as --out_dir (one deprecation line), and a folder
    path ending in .json is that file itself. The measurement is stubbed: only the output is tested."""
    from kdcourse.perf import bench, traffic
    monkeypatch.setattr(bench, "run_bench", lambda cfg, save: save({"ratios": {}}) or {"ratios": {}})
    monkeypatch.setattr(bench, "format_table", lambda results: "")
    monkeypatch.setattr(traffic, "run_traffic", lambda cfg: {"written": True})
    monkeypatch.setattr(traffic, "format_report", lambda results: "")
    {"bench": bench, "traffic": traffic}[module].main(["--profile", "smoke", "--out", str(tmp_path / "old.json")])
    assert (tmp_path / "old.json").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]
    assert "--out is deprecated, use --out_dir" in capsys.readouterr().err
