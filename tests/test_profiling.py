"""`kdcourse.perf.profiling`: GPU kernels sorted into classes by name, per-step budgets."""
import pytest

from kdcourse.perf import profiling


@pytest.mark.parametrize("name, expected", [
    ("fmha_cutlassB_bf16_aligned_64x64_k64_seqaligned_sm80(PyTorchMemEffAttention::AttentionBackwardKernel)",
     "attention"),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128, 128, 4>>", "attention"),
    ("triton_tem_fused_flex_attention_backward_0", "attention"),
    ("nvjet_tst_192x192_64x4_2x1_v_bz_coopB_TNT", "matrix"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_cublas", "matrix"),
    ("triton_tem_fused_mm_3", "matrix"),
    ("triton_poi_fused_addmm_gelu_mul_2", "triton"),
    ("triton_per_fused__to_copy_add_native_layer_norm_1", "triton"),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedAdamMathFunctor<float, 2>>",
     "optimizer"),
    ("Memcpy HtoD (Pinned -> Device)", "copies"),
    ("void at::native::(anonymous namespace)::CatArrayBatchedCopy<at::native::(anonymous namespace)::OpaqueType<2>>",
     "copies"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>>", "elementwise"),
    ("void at::native::embedding_backward_feature_kernel<float, float, long>", "other"),
])
def test_kernel_class(name, expected):
    assert profiling.kernel_class(name) == expected


def test_kernel_budget_is_per_step_and_ranked():
    kernels = [("nvjet_a", 3000.0, 6), ("triton_poi_fused_x", 1000.0, 60), ("fmha_b", 2000.0, 2)]
    budget = profiling.kernel_budget(kernels, steps=2, top=2)
    assert budget["gpu_ms_by_class"] == {"matrix": 1.5, "attention": 1.0, "triton": 0.5}
    assert list(budget["gpu_ms_by_class"]) == ["matrix", "attention", "triton"]  # longest first
    assert budget["top_kernels"] == [["nvjet_a", 1.5, 3.0], ["fmha_b", 1.0, 1.0]]
