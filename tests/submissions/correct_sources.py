SOURCES = {
"tempered_softmax": '''def tempered_softmax(logits, temperature=1.0, dim=-1):
    """softmax(logits / temperature) along dim."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return torch.softmax(logits / temperature, dim=dim)
''',
"distillation_loss": '''def distillation_loss(student_logits, teacher_logits, labels, temperature=2.0, alpha=0.5):
    """alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"shapes differ: {tuple(student_logits.shape)} vs {tuple(teacher_logits.shape)}")
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1),
                    F.softmax(teacher_logits.detach() / temperature, dim=-1), reduction="batchmean")
    hard = F.cross_entropy(student_logits, labels)
    return alpha * temperature ** 2 * soft + (1 - alpha) * hard
''',
"collect_teacher_logits": '''def collect_teacher_logits(teacher, loader, device="cpu"):
    """[N, num_classes] float32 CPU logits of the teacher, in loader order."""
    teacher.eval()
    chunks = []
    with torch.no_grad():
        for batch in loader:
            out = teacher(input_ids=batch["input_ids"].to(device),
                          attention_mask=batch["attention_mask"].to(device))
            chunks.append(out.logits.float().cpu())
    return torch.cat(chunks)
''',
"train_student": '''def train_student(student, loader, optimizer, *, temperature, alpha, epochs=1, scheduler=None,
                  device="cpu"):
    """Distil for `epochs`; every step's loss as a float."""
    student.train()
    losses = []
    for _ in range(epochs):
        for batch in loader:
            optimizer.zero_grad()
            logits = student(input_ids=batch["input_ids"].to(device),
                             attention_mask=batch["attention_mask"].to(device)).logits
            loss = distillation_loss(logits, batch["teacher_logits"].to(device),
                                     batch["labels"].to(device), temperature=temperature, alpha=alpha)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.item())
    return losses
''',
}
