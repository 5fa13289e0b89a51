"""Two more correct solutions, written independently of correct_sources.py and of the solution
notebook in other styles (for the similarity report's tests), and planted copies: a solution
with variables renamed, statements reordered and comments changed."""
SOURCES_B = {
"tempered_softmax": '''def tempered_softmax(logits, temperature=1.0, dim=-1):
    """Softmax of `logits / temperature` along `dim`."""
    if not temperature > 0:
        raise ValueError("temperature must be positive, got %r" % (temperature,))
    scaled = logits / temperature
    return F.softmax(scaled, dim)
''',
"distillation_loss": '''def distillation_loss(student_logits, teacher_logits, labels, temperature=2.0, alpha=0.5):
    """Hinton et al.'s distillation loss."""
    if temperature <= 0 or alpha < 0 or alpha > 1:
        raise ValueError(f"invalid temperature={temperature} or alpha={alpha}")
    if student_logits.shape != teacher_logits.shape or student_logits.shape[0] != labels.shape[0]:
        raise ValueError("student_logits, teacher_logits and labels do not match in shape")
    T = temperature
    target = torch.softmax(teacher_logits.detach() / T, dim=1)
    log_target = torch.log_softmax(teacher_logits.detach() / T, dim=1)
    log_student = torch.log_softmax(student_logits / T, dim=1)
    kl = torch.sum(target * (log_target - log_student)) / student_logits.size(0)
    ce = F.cross_entropy(student_logits, labels)
    return alpha * (T * T) * kl + (1.0 - alpha) * ce
''',
"collect_teacher_logits": '''def collect_teacher_logits(teacher, loader, device="cpu"):
    """The teacher's logits for every example of `loader`, in loader order."""
    teacher.eval()
    teacher.to(device)
    outputs = []
    with torch.inference_mode():
        for b in loader:
            ids = b["input_ids"].to(device)
            mask = b["attention_mask"].to(device)
            outputs.append(teacher(input_ids=ids, attention_mask=mask).logits.to("cpu", torch.float32))
    return torch.cat(outputs, dim=0).clone()
''',
"train_student": '''def train_student(student, loader, optimizer, *, temperature, alpha, epochs=1, scheduler=None,
                  device="cpu", autocast_dtype=None, max_grad_norm=None, log_every=None):
    """Train `student` on `loader` with distillation_loss; return the loss of every step."""
    student.to(device)
    student.train()
    history = []
    for epoch in range(epochs):
        for step, batch in enumerate(loader):
            batch = {k: v.to(device) for k, v in batch.items()}
            out = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            loss = distillation_loss(out.logits, batch["teacher_logits"], batch["labels"], temperature, alpha)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler:
                scheduler.step()
            history.append(float(loss))
            if log_every and len(history) % log_every == 0:
                print(f"step {len(history)}: {sum(history[-log_every:]) / log_every:.4f}")
    return history
''',
}
SOURCES_C = {
"tempered_softmax": '''def tempered_softmax(logits, temperature=1.0, dim=-1):
    """Softmax of `logits / temperature` along `dim`."""
    if temperature <= 0:
        raise ValueError(f"temperature should be > 0 but is {temperature}")
    z = logits / temperature
    z = z - z.amax(dim=dim, keepdim=True)
    e = torch.exp(z)
    return e / e.sum(dim=dim, keepdim=True)
''',
"distillation_loss": '''def distillation_loss(student_logits, teacher_logits, labels, temperature=2.0, alpha=0.5):
    """Hinton et al.'s distillation loss."""
    if not (temperature > 0):
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not (0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"shape mismatch {student_logits.shape} / {teacher_logits.shape}")
    if labels.ndim != 1 or labels.numel() != student_logits.shape[0]:
        raise ValueError(f"labels must be [batch], got {tuple(labels.shape)}")
    soft_targets = F.softmax(teacher_logits.detach() / temperature, dim=-1)
    soft_loss = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1), soft_targets,
                         reduction="sum") / student_logits.shape[0]
    hard_loss = F.nll_loss(F.log_softmax(student_logits, dim=-1), labels)
    return alpha * temperature ** 2 * soft_loss + (1 - alpha) * hard_loss
''',
"collect_teacher_logits": '''def collect_teacher_logits(teacher, loader, device="cpu"):
    """The teacher's logits for every example of `loader`, in loader order."""
    teacher = teacher.to(device).eval()
    with torch.no_grad():
        pieces = [teacher(input_ids=x["input_ids"].to(device),
                          attention_mask=x["attention_mask"].to(device)).logits.float().cpu()
                  for x in loader]
    return torch.cat(pieces)
''',
"train_student": '''def train_student(student, loader, optimizer, *, temperature, alpha, epochs=1, scheduler=None,
                  device="cpu", autocast_dtype=None, max_grad_norm=None, log_every=None):
    """Train `student` on `loader` with distillation_loss; return the loss of every step."""
    student.train()
    student.to(device)
    step_losses = []
    n = 0
    while n < epochs:
        for batch in loader:
            input_ids = batch["input_ids"].to(device)
            attention_mask = batch["attention_mask"].to(device)
            teacher_logits = batch["teacher_logits"].to(device)
            labels = batch["labels"].to(device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype,
                                enabled=autocast_dtype is not None):
                logits = student(input_ids=input_ids, attention_mask=attention_mask).logits
            loss = distillation_loss(logits, teacher_logits, labels, temperature=temperature, alpha=alpha)
            loss.backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(student.parameters(), max_grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step_losses.append(loss.item())
        n += 1
    return step_losses
''',
}

# ---------------------------------------------------------------- planted copies
# The solution notebook's cells, copied: checks and independent statements reordered, variables
# renamed, comments added.
COPY_OF_SOLUTION = {
"tempered_softmax": '''def tempered_softmax(logits, temperature=1.0, dim=-1):
    """Softmax of `logits / temperature` along `dim`."""
    if temperature <= 0:  # T must be positive
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return torch.softmax(logits / temperature, dim=dim)
''',
"distillation_loss": '''def distillation_loss(student_logits, teacher_logits, labels, temperature=2.0, alpha=0.5):
    """Hinton et al.'s distillation loss."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape or labels.shape != student_logits.shape[:1]:
        raise ValueError(f"expected student_logits and teacher_logits [batch, num_classes] and labels "
                         f"[batch], got {list(student_logits.shape)}, {list(teacher_logits.shape)} "
                         f"and {list(labels.shape)}")
    ce_term = F.cross_entropy(student_logits.float(), labels)  # plain CE at T=1
    t_logp = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    s_logp = F.log_softmax(student_logits.float() / temperature, dim=-1)
    kd_term = F.kl_div(s_logp, t_logp, reduction="batchmean", log_target=True)
    return alpha * temperature**2 * kd_term + (1 - alpha) * ce_term
''',
"collect_teacher_logits": '''def collect_teacher_logits(teacher, loader, device="cpu"):
    """The teacher's logits for every example of `loader`, in loader order."""
    teacher.eval().to(device)
    collected = []
    with torch.inference_mode():  # no graph
        for mb in loader:
            out = teacher(input_ids=mb["input_ids"].to(device, non_blocking=True),
                          attention_mask=mb["attention_mask"].to(device, non_blocking=True)).logits
            collected.append(out.float().cpu())
    return torch.cat(collected)
''',
"train_student": '''def train_student(student, loader, optimizer, *, temperature, alpha, epochs=1, scheduler=None,
                  device="cpu", autocast_dtype=None, max_grad_norm=None, log_every=None):
    """Train `student` on `loader` with distillation_loss; return the loss of every step."""
    dev_type = torch.device(device).type
    student.train().to(device)
    loss_log = []
    for ep in range(epochs):
        for mb in loader:
            mb = {name: tensor.to(device, non_blocking=True) for name, tensor in mb.items()}
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(dev_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                out = student(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"]).logits
            loss = distillation_loss(out, mb["teacher_logits"], mb["labels"], temperature, alpha)
            loss.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(student.parameters(), max_grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_log.append(loss.detach())
            if log_every and len(loss_log) % log_every == 0:
                print(f"epoch {ep}, step {len(loss_log)}: loss {torch.stack(loss_log[-log_every:]).mean():.4f}")
    return torch.stack(loss_log).tolist() if loss_log else []
''',
}
# SOURCES_C, copied the same way.
COPY_OF_C = {
"tempered_softmax": '''def tempered_softmax(logits, temperature=1.0, dim=-1):
    """Softmax of `logits / temperature` along `dim`."""
    if temperature <= 0:
        raise ValueError(f"temperature should be > 0 but is {temperature}")
    # shift by the max so exp cannot overflow
    shifted = logits / temperature
    shifted = shifted - shifted.amax(dim=dim, keepdim=True)
    ex = torch.exp(shifted)
    return ex / ex.sum(dim=dim, keepdim=True)
''',
"distillation_loss": '''def distillation_loss(student_logits, teacher_logits, labels, temperature=2.0, alpha=0.5):
    """Hinton et al.'s distillation loss."""
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"shape mismatch {student_logits.shape} / {teacher_logits.shape}")
    if labels.ndim != 1 or labels.numel() != student_logits.shape[0]:
        raise ValueError(f"labels must be [batch], got {tuple(labels.shape)}")
    if not (temperature > 0):
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not (0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    ce = F.nll_loss(F.log_softmax(student_logits, dim=-1), labels)  # hard part
    targets = F.softmax(teacher_logits.detach() / temperature, dim=-1)
    kd = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1), targets,
                  reduction="sum") / student_logits.shape[0]
    return alpha * temperature ** 2 * kd + (1 - alpha) * ce
''',
"collect_teacher_logits": '''def collect_teacher_logits(teacher, loader, device="cpu"):
    """The teacher's logits for every example of `loader`, in loader order."""
    model = teacher.to(device).eval()
    with torch.no_grad():  # inference only
        parts = [model(input_ids=item["input_ids"].to(device),
                       attention_mask=item["attention_mask"].to(device)).logits.float().cpu()
                 for item in loader]
    return torch.cat(parts)
''',
"train_student": '''def train_student(student, loader, optimizer, *, temperature, alpha, epochs=1, scheduler=None,
                  device="cpu", autocast_dtype=None, max_grad_norm=None, log_every=None):
    """Train `student` on `loader` with distillation_loss; return the loss of every step."""
    student.to(device)
    student.train()
    out_losses = []
    done = 0
    while done < epochs:
        for b in loader:
            mask = b["attention_mask"].to(device)
            ids = b["input_ids"].to(device)
            y = b["labels"].to(device)
            soft = b["teacher_logits"].to(device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype,
                                enabled=autocast_dtype is not None):
                logits = student(input_ids=ids, attention_mask=mask).logits
            loss = distillation_loss(logits, soft, y, temperature=temperature, alpha=alpha)
            loss.backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(student.parameters(), max_grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            out_losses.append(loss.item())
        done += 1
    return out_losses
''',
}
