"""Tokenizer and tiny models: deterministic, saved and reloaded exactly, set up like the real ones."""
import pytest
import torch

from kdcourse.models import (build_tiny_model, check_label_map, compile_layers, count_parameters,
                             load_pretrained, load_student, load_teacher_init, load_tokenizer,
                             measure_latency, train_tiny_tokenizer)
from kdcourse.profiles import get_profile


def test_tokenizer_round_trip(smoke_tokenizer):
    text = "i was charged a late fee of {$35.00} on xx/xx/xxxx although i paid on time"
    ids = smoke_tokenizer(text)["input_ids"]
    assert ids[0] == smoke_tokenizer.cls_token_id and ids[-1] == smoke_tokenizer.sep_token_id
    assert smoke_tokenizer.decode(ids, skip_special_tokens=True) == text


def test_tokenizer_training_is_deterministic(tmp_path, smoke_splits):
    texts = smoke_splits["train"]["text"]
    a = train_tiny_tokenizer(texts, 300, tmp_path / "a")
    b = train_tiny_tokenizer(texts, 300, tmp_path / "b")
    assert a.get_vocab() == b.get_vocab()
    assert (tmp_path / "a" / "tokenizer.json").exists()


def test_tokenizer_is_cached_after_first_use(smoke_profile, smoke_tokenizer):
    again = load_tokenizer(smoke_profile)
    assert again.get_vocab() == smoke_tokenizer.get_vocab()


def test_tiny_model_save_and_reload_gives_identical_logits(tmp_path, smoke_profile,
                                                           smoke_tokenizer, label_names):
    model = load_student(smoke_profile, label_names, smoke_tokenizer, seed=0).eval()
    model.save_pretrained(tmp_path)
    reloaded = load_pretrained(tmp_path, label_names).eval()
    batch = smoke_tokenizer(["my card was charged twice", "the debt is not mine"],
                            padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**batch).logits
        after = reloaded(**batch).logits
    assert before.shape == (2, len(label_names))
    torch.testing.assert_close(after, before)


@pytest.mark.slow
def test_compiled_layers_give_the_eager_logits_and_gradients(smoke_profile, smoke_tokenizer, label_names):
    """compile_layers (the reference run's --compile) changes speed, not results; two input shapes."""
    eager = load_student(smoke_profile, label_names, smoke_tokenizer, seed=0)
    compiled = compile_layers(load_student(smoke_profile, label_names, smoke_tokenizer, seed=0))
    for texts in (["my card was charged twice", "the debt is not mine"],
                  ["they closed my account without notice and kept my balance for weeks"] * 3):
        batch = smoke_tokenizer(texts, padding=True, return_tensors="pt")
        for model in (eager, compiled):
            model.zero_grad()
            model(**batch).logits.square().sum().backward()
        torch.testing.assert_close(compiled(**batch).logits, eager(**batch).logits, atol=1e-5, rtol=1e-4)
        grads = [m.base_model.layers[0].mlp.Wi.weight.grad for m in (compiled, eager)]
        torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_same_seed_same_weights(smoke_profile, smoke_tokenizer, label_names):
    a = load_student(smoke_profile, label_names, smoke_tokenizer, seed=3)
    b = load_student(smoke_profile, label_names, smoke_tokenizer, seed=3)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_tiny_models_match_the_released_checkpoints_settings(smoke_profile, smoke_tokenizer,
                                                             label_names):
    config = load_student(smoke_profile, label_names, smoke_tokenizer).config
    assert config.classifier_pooling == "mean"  # ModernBertConfig() defaults to "cls"
    assert config.id2label[0] == label_names[0] and config.num_labels == len(label_names)
    assert config.pad_token_id == smoke_tokenizer.pad_token_id
    assert config.local_attention >= smoke_profile.max_length


def test_cpu_teacher_is_at_least_2_6x_the_student(label_names):
    """The 395M/149M ratio of the real pair, kept by the offline default."""
    profile = get_profile("cpu")
    tokenizer = load_tokenizer(get_profile("smoke"))  # the body's size does not depend on vocab
    teacher = load_teacher_init(profile, label_names, tokenizer)
    student = load_student(profile, label_names, tokenizer)
    assert count_parameters(teacher) >= 2.6 * count_parameters(student)


def test_mismatched_label_maps_are_refused(smoke_profile, smoke_tokenizer, label_names):
    teacher = build_tiny_model(smoke_profile.student_config, smoke_tokenizer, label_names, 64)
    student = build_tiny_model(smoke_profile.student_config, smoke_tokenizer,
                               label_names[::-1], 64)
    with pytest.raises(ValueError, match="share one label map"):
        check_label_map(student, [teacher.config.id2label[i] for i in range(teacher.config.num_labels)],
                        "the student")


def test_missing_local_model_folder_is_a_clear_error(tmp_path, label_names):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(tmp_path / "no-such-model", label_names)


def test_size_and_speed_helpers(smoke_profile, smoke_tokenizer, label_names):
    model = load_student(smoke_profile, label_names, smoke_tokenizer)
    params = count_parameters(model)
    assert params > 0
    speed = measure_latency(model, batch_size=4, seq_len=32, repeats=3, warmup=1)
    assert speed["latency_ms"] > 0
    assert speed["sequences_per_s"] == pytest.approx(4 / (speed["latency_ms"] / 1000))


def test_student_attention_is_chosen_by_name(smoke_profile, smoke_tokenizer, label_names):
    """`--attention` of the reference run: kd_varlen gives SDPA's logits on a padded batch (CPU
    reference kernel); an unknown name is refused with the choices."""
    batch = smoke_tokenizer(["my card was charged twice for one purchase", "not mine"], padding=True,
                            return_tensors="pt")
    logits = {}
    for attention in ("auto", "kd_varlen"):
        model = load_student(smoke_profile, label_names, smoke_tokenizer, seed=0, attention=attention).eval()
        with torch.no_grad():
            logits[model.config._attn_implementation] = model(**batch).logits
    assert set(logits) == {"sdpa", "kd_varlen"}
    torch.testing.assert_close(logits["kd_varlen"], logits["sdpa"], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="unknown attention 'flash'.*kd_varlen"):
        load_student(smoke_profile, label_names, smoke_tokenizer, attention="flash")
