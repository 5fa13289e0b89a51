"""Sample submissions built from tests/submissions/correct_sources.py: the classic mistakes and
hostile code, as (item, name, old text, new text, failing test, hint phrase) rows."""
import json
from collections import defaultdict
from pathlib import Path

from correct_sources import SOURCES

MISTAKES = [
    ("tempered_softmax", "temperature-multiplied", "logits / temperature", "logits * temperature",
     "matches_softmax_of_logits_over_T", "multiplied"),
    ("tempered_softmax", "temperature-after-softmax", "torch.softmax(logits / temperature, dim=dim)",
     "torch.softmax(logits, dim=dim) / temperature", "matches_softmax_of_logits_over_T", "before the softmax"),
    ("tempered_softmax", "naive-exp", "torch.softmax(logits / temperature, dim=dim)",
     "torch.exp(logits / temperature) / torch.exp(logits / temperature).sum(dim=dim, keepdim=True)",
     "stable_for_logits_in_the_thousands", "maximum"),
    ("tempered_softmax", "dim-ignored", "dim=dim)", "dim=-1)", "normalises_along_dim", "`dim`"),
    ("tempered_softmax", "no-valueerror", "        raise ValueError", "        pass  #",
     "rejects_nonpositive_temperature", "ValueError"),
    ("tempered_softmax", "input-modified", "return torch.softmax(logits / temperature, dim=dim)",
     "logits /= temperature\n    return torch.softmax(logits, dim=dim)", "does_not_modify_its_input", "in-place"),
    ("distillation_loss", "kl-reversed", "F.kl_div(F.log_softmax(student_logits / temperature, dim=-1),\n"
     "                    F.softmax(teacher_logits.detach() / temperature, dim=-1)",
     "F.kl_div(F.log_softmax(teacher_logits.detach() / temperature, dim=-1),\n"
     "                    F.softmax(student_logits / temperature, dim=-1)", "matches_reference", "reversed"),
    ("distillation_loss", "no-T-squared", "alpha * temperature ** 2 * soft", "alpha * soft",
     "soft_term_is_scaled_by_T_squared", "temperature**2"),
    ("distillation_loss", "reduction-mean", 'reduction="batchmean"', 'reduction="mean"',
     "matches_reference", "batchmean"),
    ("distillation_loss", "reduction-sum", 'reduction="batchmean"', 'reduction="sum"',
     "matches_reference", "summed over the batch"),
    ("distillation_loss", "probs-into-kl-div", "F.kl_div(F.log_softmax(student_logits",
     "F.kl_div(F.softmax(student_logits", "matches_reference", "log-probabilities"),
    ("distillation_loss", "alpha-swapped", "alpha * temperature ** 2 * soft + (1 - alpha) * hard",
     "(1 - alpha) * temperature ** 2 * soft + alpha * hard", "matches_reference", "swapped"),
    ("distillation_loss", "temperature-in-ce", "F.cross_entropy(student_logits, labels)",
     "F.cross_entropy(student_logits / temperature, labels)", "matches_reference", "plain logits"),
    ("distillation_loss", "log-of-softmax", "F.log_softmax(student_logits / temperature, dim=-1)",
     "torch.log(F.softmax(student_logits / temperature, dim=-1))", "stable_for_large_logits", "log_softmax"),
    ("distillation_loss", "teacher-gets-gradient", "teacher_logits.detach()", "teacher_logits",
     "no_gradient_reaches_teacher", "detach"),
    ("collect_teacher_logits", "teacher-in-train-mode", "    teacher.eval()\n", "",
     "teacher_is_put_in_eval_mode", "eval"),
    ("collect_teacher_logits", "probabilities", "out.logits.float().cpu()",
     "out.logits.softmax(-1).float().cpu()", "matches_teacher_logits_in_order", "probabilities"),
    ("collect_teacher_logits", "graph-kept", "with torch.no_grad():", "if True:",
     "keeps_no_autograd_graph", "no_grad"),
    ("collect_teacher_logits", "wrong-order", "return torch.cat(chunks)", "return torch.cat(chunks).flip(0)",
     "matches_teacher_logits_in_order", "order"),
    ("collect_teacher_logits", "last-batch-dropped", "return torch.cat(chunks)",
     "return torch.cat(chunks[:-1])", "matches_teacher_logits_in_order", "last"),
    ("train_student", "grad-never-zeroed", "            optimizer.zero_grad()\n", "",
     "losses_match_reference", "zero_grad"),
    ("train_student", "teacher-ignored", "loss = distillation_loss(logits, batch[\"teacher_logits\"].to(device),",
     "loss = F.cross_entropy(logits, batch[\"labels\"]) + 0 * distillation_loss(logits, batch[\"teacher_logits\"].to(device),",
     "losses_match_reference", "teacher is ignored"),
    ("train_student", "scheduler-not-stepped", "                scheduler.step()", "                pass",
     "scheduler_steps_every_batch", "scheduler"),
    ("train_student", "eval-mode", "student.train()", "student.eval()",
     "student_trains_in_train_mode", "train()"),
    ("train_student", "epochs-ignored", "for _ in range(epochs):", "for _ in range(1):",
     "returns_one_float_per_step", "epochs"),
    ("train_student", "step-before-backward", "            loss.backward()\n            optimizer.step()",
     "            optimizer.step()\n            loss.backward()", "losses_match_reference", "before loss.backward"),
]

# A correct distillation_loss written differently: KL by hand, reduction by sum / batch size.
MANUAL_KL = '''def distillation_loss(student_logits, teacher_logits, labels, temperature=2.0, alpha=0.5):
    if temperature <= 0 or not (0 <= alpha <= 1) or student_logits.shape != teacher_logits.shape:
        raise ValueError(f"bad arguments: temperature={temperature}, alpha={alpha}")
    with torch.no_grad():
        p_t = torch.softmax(teacher_logits / temperature, dim=1)
        log_p_t = torch.log_softmax(teacher_logits / temperature, dim=1)
    log_p_s = torch.log_softmax(student_logits / temperature, dim=1)
    kl = (p_t * (log_p_t - log_p_s)).sum() / student_logits.shape[0]
    hard = F.nll_loss(F.log_softmax(student_logits, dim=1), labels, reduction="sum") / len(labels)
    return alpha * temperature ** 2 * kl + (1 - alpha) * hard
'''


def mutate(item: str, old: str, new: str) -> dict:
    source = SOURCES[item]
    assert old in source, f"mutation text {old!r} not in the {item} source"
    return dict(SOURCES, **{item: source.replace(old, new)})


def notebook(sources: dict) -> dict:
    """A minimal nbgrader notebook: each graded function cell, then its (visible) test cell."""
    from kdcourse.notebook import GRADED_POINTS as points
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "# Week 6: distillation"}]
    for name, source in sources.items():
        cells.append({"cell_type": "code", "metadata": {"nbgrader": {
            "grade": False, "solution": True, "locked": False, "grade_id": name, "schema_version": 3}},
            "source": source, "outputs": [], "execution_count": None})
        cells.append({"cell_type": "code", "metadata": {"nbgrader": {
            "grade": True, "solution": False, "locked": True, "grade_id": f"test_{name}",
            "points": points[name], "schema_version": 3}},
            "source": f"assert callable({name})", "outputs": [], "execution_count": None})
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
            "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}


def write(path: Path, sources: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook(sources), indent=1))
    return path


def bundles() -> list[list[tuple]]:
    """MISTAKES grouped so that mutants of different items share a notebook (items are graded
    independently): bundle k holds the k-th mistake of every item that has one."""
    by_item = defaultdict(list)
    for row in MISTAKES:
        by_item[row[0]].append(row)
    return [[rows[k] for rows in by_item.values() if k < len(rows)]
            for k in range(max(map(len, by_item.values())))]


BUNDLES = bundles()


def release_notebook(folder: Path) -> Path:
    """The student release (every body `raise NotImplementedError()`): the generated one, or,
    before `make release` has run, the solution stripped the way nbgrader strips it."""
    from kdcourse.notebook import GRADED_POINTS, graded_cells
    from kdcourse.paths import RELEASE_NOTEBOOK, SOLUTION_NOTEBOOK
    if RELEASE_NOTEBOOK.exists():
        return RELEASE_NOTEBOOK
    sources = {n: s.split("### BEGIN SOLUTION")[0] + "raise NotImplementedError()\n"
               for n, s in graded_cells(SOLUTION_NOTEBOOK).items() if n in GRADED_POINTS}
    return write(folder / "release.ipynb", sources)
