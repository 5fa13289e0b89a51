"""`python -m kdcourse.perf.traffic`: Inductor's per-kernel byte counts, the linear fit, the command."""
import json

import pytest
import torch

from kdcourse.perf import inductor_bytes, traffic


def test_a_fused_kernel_counts_what_it_reads_and_writes():
    """x * 2 + 1 on 1,000 floats: one generated kernel, 4 kB in and 4 kB out."""
    torch._dynamo.reset()
    with inductor_bytes.record_kernels() as kernels:
        torch.compile(lambda x: x * 2 + 1)(torch.randn(1000))
    assert inductor_bytes.totals(kernels) == {"fused": {"kernels": 1, "bytes": 8000}}


def test_a_matrix_product_is_a_library_call():
    """a @ b of two [64, 64] float matrices: an extern kernel reading 2 x 16 kB and writing 16 kB; the
    relu after it is fused on its own."""
    torch._dynamo.reset()
    with inductor_bytes.record_kernels() as kernels:
        torch.compile(lambda a, b: torch.relu(a @ b))(torch.randn(64, 64), torch.randn(64, 64))
    counted = inductor_bytes.totals(kernels)
    assert counted["extern"] == {"kernels": 1, "bytes": 3 * 64 * 64 * 4}
    assert counted["fused"]["kernels"] == 1


def test_fit_recovers_constant_and_slope():
    small = {"fused": {"kernels": 5, "bytes": 1000 + 3 * 100}, "extern": {"kernels": 2, "bytes": 50 * 100}}
    large = {"fused": {"kernels": 5, "bytes": 1000 + 3 * 300}, "extern": {"kernels": 2, "bytes": 50 * 300}}
    kinds = traffic.fit(small, large, (100, 300))
    assert kinds["fused"] == pytest.approx({"kernels": 5, "per_position": 3, "constant": 1000})
    assert kinds["extern"] == pytest.approx({"kernels": 2, "per_position": 50, "constant": 0})


@pytest.mark.slow
def test_traffic_runs_on_the_smoke_model(tmp_path):
    """The command compiles the smoke student twice and bounds MFU below 100% on every card."""
    results = traffic.main(["--profile", "smoke", "--out_dir", str(tmp_path)])
    assert json.loads((tmp_path / "traffic.json").read_text())["fused_bytes_per_step"] == pytest.approx(results["fused_bytes_per_step"])
    assert results["kinds"]["fused"]["per_position"] > 0 and results["kinds"]["extern"]["per_position"] > 0
    assert results["step"]["positions"] >= results["step"]["tokens"] > 0
    for card in results["cards"].values():
        assert 0 < card["mfu_ceiling"] < 1 and card["fused_ms"] > 0
    # bf16 weights: a bf16 residual stream moves fewer bytes a position; the master copies cost 12 a parameter
    bf16 = traffic.main(["--profile", "smoke", "--bf16_weights", "true", "--out_dir", str(tmp_path / "bf16")])
    assert bf16["kinds"]["fused"]["per_position"] < 0.9 * results["kinds"]["fused"]["per_position"]
    assert bf16["adamw_bytes_per_step"] == 40 * bf16["step"]["params"]


def test_every_card_has_a_bandwidth_and_a_peak():
    from kdcourse.perf.flops import PEAK_BF16
    assert traffic.BANDWIDTH.keys() == PEAK_BF16.keys()


@pytest.mark.parametrize("args, message", [
    ({"fit_batch_sizes": [4, 2]}, "two increasing positive sizes"),
    ({"fit_batch_sizes": [2]}, "two increasing positive sizes"),
    ({"length": 0}, "length must be >= 1"),
])
def test_bad_settings_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        traffic.TrafficConfig(**args)
