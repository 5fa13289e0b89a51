"""The distillation loss that train_student is graded with, so a bug in distillation_loss costs
points once.

Only the worker process forked for train_student imports this file, before any student cell runs
there. The processes that grade the other items never import it, and their audit hook refuses
to read it: a distillation_loss cell finds no correct loss to borrow, in memory or on disk.
"""
import torch.nn.functional as F


def make_distillation_loss():
    """distillation_loss(student_logits [batch, classes], teacher_logits [batch, classes],
    labels [batch], temperature, alpha) -> scalar: alpha * T^2 * KL(teacher || student, batchmean)
    + (1 - alpha) * CE. The torch functions are bound now, before student cells can patch them."""
    kl_div, log_softmax, cross_entropy = F.kl_div, F.log_softmax, F.cross_entropy

    def distillation_loss(student_logits, teacher_logits, labels, temperature=2.0, alpha=0.5):
        soft = kl_div(log_softmax(student_logits / temperature, dim=-1),
                      log_softmax(teacher_logits.detach() / temperature, dim=-1),
                      reduction="batchmean", log_target=True)
        hard = cross_entropy(student_logits, labels)
        return alpha * temperature ** 2 * soft + (1 - alpha) * hard
    return distillation_loss
