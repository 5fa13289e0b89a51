"""`make bench`: the entry function on the smoke models, the FLOP count, no `datasets` import;
`make gpu-check`'s script on CPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdcourse.perf import bench, flops, report, workload
from kdcourse.perf import rows as bench_rows
from kdcourse.profiles import get_profile


def test_flops_per_sequence_matches_the_formula():
    """6N per token plus 12 * d_model * context per layer, context capped by the local window."""
    config = workload.bench_model_config(get_profile("gpu"), "student")
    n, length = 1000, 512
    layers = config.num_hidden_layers
    global_layers = len(range(0, layers, config.global_attn_every_n_layers))
    context = global_layers * length + (layers - global_layers) * (config.local_attention + 1)
    expected = 6 * n * length + 12 * config.hidden_size * context * length
    assert flops.flops_per_sequence(config, n, length) == pytest.approx(expected)
    assert flops.flops_per_sequence(config, n, length, training=False) == pytest.approx(expected / 3)


def test_gpu_profile_benchmarks_the_released_shapes():
    """The gpu profile builds ModernBERT-base and -large shapes without a download."""
    student = workload.bench_model_config(get_profile("gpu"), "student")
    teacher = workload.bench_model_config(get_profile("gpu"), "teacher")
    assert (student.hidden_size, student.num_hidden_layers, student.intermediate_size) == (768, 22, 1152)
    assert (teacher.hidden_size, teacher.num_hidden_layers, teacher.intermediate_size) == (1024, 28, 2624)
    assert student.vocab_size == teacher.vocab_size == 50368 and student.local_attention == 128


@pytest.mark.slow
def test_bench_runs_on_the_smoke_models(tmp_path):
    """The entry function times all three measurements and writes their ratios; an earlier
    bench.json moves to history/ first."""
    out = tmp_path / "bench.json"
    out.write_text('{"earlier": true}')
    results = bench.main(["--profile", "smoke", "--steps", "2", "--warmup", "1", "--soft_label_batches", "1",
                          "--compare_attention", "kd_varlen", "--kernel_table", "5", "--packed_tokens", "256",
                          "--out_dir", str(tmp_path)])
    assert json.loads(out.read_text())["ratios"] == pytest.approx(results["ratios"])
    assert [p.read_text() for p in (tmp_path / "history").glob("*/bench.json")] == ['{"earlier": true}']
    for name in ("reference", "reference_kd_varlen", "reference_packed", "trainer", "soft_labels"):
        assert results[name]["tokens_per_s"] > 0, name
    assert results["ratios"]["reference_over_trainer"] > 0
    assert results["reference_kd_varlen"]["attention"] == "kd_varlen"
    assert results["reference"]["profiled_host_ms"] > 0 and "aten::" in results["reference"]["kernel_table"]
    # Length-grouped batches from an epoch-sized pool: little padding, as in the real run.
    assert 0 < results["reference"]["padding"] < 0.1 and 0 <= results["reference_packed"]["padding"] < 0.2


def test_a_failed_optional_row_is_reported_and_the_rest_kept(tmp_path):
    """An unknown attention fails its own row only; the other measurements and ratios are written."""
    results = bench.main(["--profile", "smoke", "--steps", "1", "--warmup", "0", "--soft_label_batches", "1",
                          "--trainer", "false", "--compare_attention", "no_such_attention",
                          "--out_dir", str(tmp_path)])
    assert "reference_no_such_attention" in results["errors"]
    assert results["reference"]["tokens_per_s"] > 0 and "soft_labels_over_reference" in results["ratios"]


def test_rows_can_be_switched_off(tmp_path):
    """--eager false and --soft_label_batches 0 skip those rows (a later row set of one GPU session); the
    ratios are those the remaining rows allow, and the table still prints."""
    results = bench.main(["--profile", "smoke", "--steps", "1", "--warmup", "0", "--eager", "false",
                          "--soft_label_batches", "0", "--compare_attention", "kd_varlen",
                          "--out_dir", str(tmp_path)])
    assert "reference" not in results and "soft_labels" not in results and "teacher_params" not in results
    assert results["reference_kd_varlen"]["tokens_per_s"] > 0 and results["trainer"]["tokens_per_s"] > 0
    assert results["ratios"] == {}
    assert "reference_kd_varlen" in report.format_table(results)


def test_the_bf16_weights_row(tmp_path):
    """--bf16_weights with --compile adds the compiled step with bf16 weights and fp32 master copies,
    checked against its own eager run, and its ratio to the fp32 compiled row."""
    results = bench.main(["--profile", "smoke", "--steps", "2", "--warmup", "1", "--eager", "false",
                          "--trainer", "false", "--soft_label_batches", "0", "--compile", "true",
                          "--bf16_weights", "true", "--out_dir", str(tmp_path)])
    row = results["reference_bf16_weights"]
    assert row["weights"] == "bf16 + fp32 master" and row["tokens_per_s"] > 0 and row["compiled"]
    assert row["logits_rel_error_vs_eager"] < report.SUSPECT_ERROR
    assert results["ratios"]["bf16_weights_over_fp32"] == pytest.approx(
        row["tokens_per_s"] / results["reference_compiled"]["tokens_per_s"])
    assert "sdpa +compile +bf16" in report.format_table(results)


def test_precollated_batches_are_the_loaders_batches(tmp_path):
    """--precollate true collates the same batches before the timed loop: the same tokens are timed."""
    rows = {}
    for precollate in ("false", "true"):
        rows[precollate] = bench.main(["--profile", "smoke", "--steps", "2", "--warmup", "1", "--trainer", "false",
                                       "--soft_label_batches", "0", "--precollate", precollate,
                                       "--out_dir", str(tmp_path / precollate)])["reference"]
    assert [rows[p]["precollated"] for p in ("false", "true")] == [False, True]
    tokens = {p: r["tokens_per_s"] * r["seconds"] for p, r in rows.items()}
    assert tokens["true"] == pytest.approx(tokens["false"]) and rows["true"]["padding"] == rows["false"]["padding"]


def test_tuned_compilation_and_capped_packs(tmp_path, monkeypatch):
    """--coordinate_descent_tuning holds while the rows compile and is undone after the run;
    --pack_max_texts caps the texts per packed row and its cu_seqlens, compiled and precollated too."""
    import torch._inductor.config as inductor
    seen = []

    def spy(model, *args, **kwargs):
        seen.append(inductor.coordinate_descent_tuning)
        return compile_student(model, *args, **kwargs)
    compile_student = bench_rows.compile_student
    monkeypatch.setattr(bench_rows, "compile_student", spy)
    results = bench.main(["--profile", "smoke", "--steps", "2", "--warmup", "1", "--eager", "false",
                          "--trainer", "false", "--soft_label_batches", "0", "--compile", "true",
                          "--coordinate_descent_tuning", "true", "--packed_tokens", "256", "--pack_max_texts", "6",
                          "--precollate", "true", "--out_dir", str(tmp_path)])
    assert seen == [True, True] and inductor.coordinate_descent_tuning is False
    assert results["inductor"] == {"coordinate_descent_tuning": True}
    for name in ("reference_packed", "reference_packed_compiled", "reference_compiled"):
        assert results[name]["tokens_per_s"] > 0 and results[name]["precollated"], name
    packed = results["reference_packed_compiled"]
    assert packed["max_texts"] == 6 and packed["texts_per_step"] <= 6 and packed["cu_seqlens"] == 6 + 256 // 64 + 2
    assert packed["logits_rel_error_vs_eager"] < report.SUSPECT_ERROR
    assert "coordinate-descent tuning" in report.format_table(results)


def test_kd_varlen_under_compile(tmp_path):
    """The b128_varlen row's path on the smoke model: kd_varlen's fixed-shape unpadding compiled per
    layer gives its eager logits (on CPU through the reference kernel)."""
    results = bench.main(["--profile", "smoke", "--steps", "1", "--warmup", "0", "--eager", "false",
                          "--trainer", "false", "--soft_label_batches", "0", "--attention", "kd_varlen",
                          "--compile", "true", "--out_dir", str(tmp_path)])
    row = results["reference_compiled"]
    assert row["attention"] == "kd_varlen" and row["tokens_per_s"] > 0
    assert row["logits_rel_error_vs_eager"] < report.SUSPECT_ERROR


def test_nothing_to_measure_is_refused():
    with pytest.raises(ValueError, match="nothing to measure"):
        bench.BenchConfig(eager=False, trainer=False, soft_label_batches=0)
    with pytest.raises(ValueError, match="soft_label_batches"):
        bench.BenchConfig(soft_label_batches=-1)


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"eval_batch_size": -1}, {"packed_tokens": -8},
                                 {"extra_batch_sizes": [64, 0]}, {"pack_max_texts": -1}])
def test_sizes_below_one_are_refused(bad):
    """0 used to mean the profile's batch size silently; now a size is given or left out."""
    with pytest.raises(ValueError, match="must be >= "):
        bench.BenchConfig(**bad)


def row(tokens_per_s, error=None):
    return {"tokens_per_s": tokens_per_s} | ({} if error is None else {"logits_rel_error_vs_eager": error})


@pytest.mark.parametrize("rows, expected", [
    ({"reference": row(100), "trainer": row(50), "soft_labels": row(300), "reference_compiled": row(200, 0.001)},
     {"reference_over_trainer": 2, "compiled_over_eager": 2, "compiled_over_trainer": 4,
      "soft_labels_over_reference": 3}),
    ({"reference": row(100), "trainer": row(50), "reference_compiled": row(200, 0.5)},  # suspect: no ratio
     {"reference_over_trainer": 2}),
    ({"trainer": row(50), "reference_compiled": row(200, 0.001)}, {"compiled_over_trainer": 4}),  # no eager row
    ({"reference": row(100), "reference_bf16_weights": row(150) | {"compiled": None}},  # eager bf16 vs eager
     {"bf16_weights_over_fp32": 1.5}),
    ({"reference_compiled": row(200, 0.001), "reference_bf16_weights": row(300, 0.004) | {"compiled": "layers"}},
     {"bf16_weights_over_fp32": 1.5}),
])
def test_ratios_use_the_rows_that_were_measured(rows, expected):
    assert report.ratios(rows) == pytest.approx(expected)


def test_bench_imports_without_datasets():
    """The GPU image has no `datasets`: kdcourse.perf.bench must not import it."""
    code = ("import sys\nclass Block:\n    def find_spec(self, name, *a):\n"
            "        if name.split('.')[0] == 'datasets': raise ImportError('blocked')\n"
            "sys.meta_path.insert(0, Block())\nimport kdcourse.perf.bench\n"
            "kdcourse.perf.workload.bench_model_config(__import__('kdcourse.profiles').profiles.get_profile('gpu'), 'student')\n"
            "assert 'datasets' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_compiled_error_catches_a_wrong_compilation():
    """The bench's compiled-vs-eager check: an exact backend gives 0, a backend whose graph doubles its
    outputs gives a relative error of 1 (force_eager runs the original Python)."""
    linear = torch.nn.Linear(4, 3)
    batch = {"x": torch.randn(5, 4)}

    def doubling_backend(graph, example_inputs):
        return lambda *args: [2 * out for out in graph(*args)]

    for backend, expected in (("eager", 0.0), (doubling_backend, 1.0)):
        torch._dynamo.reset()
        compiled = torch.compile(linear, backend=backend)
        error = bench_rows.compiled_error(lambda b: compiled(b["x"]), batch, "cpu", None)
        assert error == pytest.approx(expected, abs=1e-6), backend


@pytest.mark.parametrize("error, is_suspect", [(None, False), (0.004, False), (0.05, True),
                                               ("RuntimeError: no eager run", True)])
def test_a_compiled_row_off_its_eager_model_is_suspect(error, is_suspect):
    """Such a row keeps its speed but counts in no ratio, and the table says why."""
    assert report.suspect(error) is is_suspect
    if isinstance(error, float):
        assert ("SUSPECT" in report.format_error(error)) is is_suspect


def session_rows() -> dict[str, list[str]]:
    """Each row set of gpu_session.sh: its name and bench arguments, `$(baseline)` as a later row's."""
    script = (Path(__file__).resolve().parents[1] / "solutions" / "reference" / "gpu_session.sh").read_text()
    rows = {}
    for line in script.replace("\\\n", " ").splitlines():
        words = line.replace("$(baseline)", "--eager false --soft_label_batches 0").split()
        words = words[1:] if words and words[0].startswith("LIMIT=") else words
        if len(words) > 1 and words[0] in ("bench", "gpu_only") and not words[1].startswith("NAME"):
            rows[words[1]] = words[2:]
    return rows


def test_every_session_row_parses_and_validates():
    """A misspelt option in gpu_session.sh would cost a GPU call: every row's arguments parse into a
    valid BenchConfig, and the rows come in the documented value order."""
    from transformers import HfArgumentParser
    rows = session_rows()
    assert list(rows)[:6] == ["b128_sdpa", "b128_flex", "packed32k", "b128_flex_graphs", "b128_cdt", "b128_precollated"]
    for name, args in rows.items():
        (cfg,) = HfArgumentParser(bench.BenchConfig).parse_args_into_dataclasses(args=["--profile", "smoke", *args])
        assert cfg.out_dir is None and cfg.profile == "smoke", name
    assert bench.BenchConfig(**{"packed_tokens": 32768, "pack_max_texts": 256}).pack_max_texts == 256


@pytest.mark.slow
def test_the_gpu_session_script_runs_its_first_row_set_on_cpu(tmp_path):
    """`make gpu-check` spends scarce GPU minutes: its script (gpu tests, then the first row set,
    compiled with fp32 and with bf16 weights) runs here on the smoke models, moves earlier results
    aside and reports no failure."""
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "session"
    out.mkdir()
    (out / "old.json").write_text("{}")
    env = dict(os.environ, OUT=str(out), BENCH_PROFILE="smoke", BUDGET="400",
               ROWS="tests b128_sdpa", PY=sys.executable)
    done = subprocess.run(["bash", str(repo / "solutions" / "reference" / "gpu_session.sh")], env=env,
                          cwd=repo, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["b128_sdpa.json"], done.stdout[-3000:]
    [previous] = tmp_path.glob("session.previous-*")
    assert (previous / "old.json").read_text() == "{}"
    rows = json.loads((out / "b128_sdpa.json").read_text())
    for name in ("reference", "reference_compiled", "reference_bf16_weights", "soft_labels"):
        assert rows[name]["tokens_per_s"] > 0, name
    assert rows["reference_bf16_weights"]["logits_rel_error_vs_eager"] < 0.05
    assert "passed" in done.stdout or "skipped" in done.stdout   # the gpu tests ran (skipped on CPU)

