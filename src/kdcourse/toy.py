"""A 2-D warm-up: dark knowledge you can see, in seconds on a CPU.

Three classes of points in the plane, two close cousins and one apart (dog, wolf, cat, as in the
classic demo). A small MLP teacher is trained on them; two softmax (linear) students are trained by
plain full-batch gradient descent with the notebook's own `distillation_loss`, one on hard labels
(alpha = 0) and one distilled at temperature T. The students are compared on accuracy and on how
well their whole distribution matches the teacher's.

    result = run_toy(tempered_softmax, distillation_loss, seed=0)
    result.hard.accuracy, result.distilled.agreement, result.to_json()

The setup was fixed before measuring (docs/reference.md has the figures over 3 seeds): it is not
tuned to make the pattern appear.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field

import torch

CLASSES = ("dog", "wolf", "cat")
# Class centres: dog and wolf 4 standard deviations apart (close cousins), cat far from both.
CENTRES = ((0.0, 0.0), (2.0, 0.0), (1.0, 4.0))
SPREAD = 0.5


@dataclass
class ToyConfig:
    points_per_class: int = 100    # training points per class (teacher and students see the same)
    test_per_class: int = 1000     # held-out points per class, for every reported number
    teacher_hidden: int = 32       # the teacher: 2 -> 32 -> 32 -> 3 MLP, tanh
    teacher_steps: int = 500       # Adam, lr 0.01, full batch
    student_steps: int = 500       # plain gradient descent, full batch
    student_lr: float = 0.5
    temperature: float = 4.0       # the distilled student: T and the weight of the soft term
    alpha: float = 0.9
    tolerance: float = 0.1         # "agree" = every class probability within this of the teacher's


@dataclass
class StudentScore:
    accuracy: float        # on the held-out points
    agreement: float       # share of held-out points whose distribution is within `tolerance`
    kl_to_teacher: float   # mean KL(teacher || student) at T = 1, nats


@dataclass
class ToyResult:
    seed: int
    config: ToyConfig
    teacher_accuracy: float
    hard: StudentScore
    distilled: StudentScore
    # Everything the plots need: the models as callables are not kept, their maps are.
    maps: dict = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        return {"seed": self.seed, "teacher_accuracy": self.teacher_accuracy,
                "hard": asdict(self.hard), "distilled": asdict(self.distilled)}


def make_points(n_per_class: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Points [3 * n, 2] around CENTRES with spread SPREAD, and their labels [3 * n]."""
    centres = torch.tensor(CENTRES)
    labels = torch.arange(len(CENTRES)).repeat_interleave(n_per_class)
    points = centres[labels] + SPREAD * torch.randn(len(labels), 2, generator=generator)
    return points, labels


def train_teacher(points, labels, cfg: ToyConfig, seed: int) -> torch.nn.Module:
    """A small MLP fitted with cross-entropy (Adam: the teacher is not what the demo is about)."""
    torch.manual_seed(seed)
    teacher = torch.nn.Sequential(torch.nn.Linear(2, cfg.teacher_hidden), torch.nn.Tanh(),
                                  torch.nn.Linear(cfg.teacher_hidden, cfg.teacher_hidden),
                                  torch.nn.Tanh(), torch.nn.Linear(cfg.teacher_hidden, len(CLASSES)))
    optimizer = torch.optim.Adam(teacher.parameters(), lr=0.01)
    for _ in range(cfg.teacher_steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(teacher(points), labels).backward()
        optimizer.step()
    return teacher.eval()


def train_softmax_student(points, labels, teacher_logits, distillation_loss, cfg: ToyConfig, *,
                          temperature: float, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights [2, 3] and bias [3] of a softmax classifier, by plain full-batch gradient descent on
    `distillation_loss(points @ W + b, teacher_logits, labels, temperature, alpha)`."""
    weight = torch.zeros(2, len(CLASSES), requires_grad=True)
    bias = torch.zeros(len(CLASSES), requires_grad=True)
    for _ in range(cfg.student_steps):
        loss = distillation_loss(points @ weight + bias, teacher_logits, labels, temperature, alpha)
        grad_w, grad_b = torch.autograd.grad(loss, (weight, bias))
        with torch.no_grad():
            weight -= cfg.student_lr * grad_w
            bias -= cfg.student_lr * grad_b
    return weight.detach(), bias.detach()


def score(student_probs, teacher_probs, labels, tolerance: float) -> StudentScore:
    """Accuracy, agreement within `tolerance` and mean KL(teacher || student); probs [N, 3]."""
    close = (student_probs - teacher_probs).abs().amax(-1) <= tolerance
    kl = (teacher_probs * (teacher_probs.clamp_min(1e-12).log()
                           - student_probs.clamp_min(1e-12).log())).sum(-1)
    return StudentScore(accuracy=(student_probs.argmax(-1) == labels).float().mean().item(),
                        agreement=close.float().mean().item(), kl_to_teacher=kl.mean().item())


def probability_grid(steps: int = 120, margin: float = 1.5) -> tuple[torch.Tensor, tuple]:
    """Grid points [steps * steps, 2] covering the classes, and the extent (x0, x1, y0, y1)."""
    centres = torch.tensor(CENTRES)
    low, high = centres.min(0).values - margin, centres.max(0).values + margin
    xs, ys = torch.linspace(low[0], high[0], steps), torch.linspace(low[1], high[1], steps)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
    return grid, (low[0].item(), high[0].item(), low[1].item(), high[1].item())


@contextlib.contextmanager
def one_thread():
    """Tiny tensors: a second thread only adds synchronisation (the measurement:
    docs/reference.md, the toy), so the toy runs on one and restores the caller's setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_toy(tempered_softmax, distillation_loss, seed: int = 0, cfg: ToyConfig | None = None,
            grid_steps: int = 120) -> ToyResult:
    """The whole warm-up for one seed, with the notebook's `tempered_softmax` (probabilities at
    T = 1) and `distillation_loss` (the students' only loss); a ToyResult with the maps to plot."""
    with one_thread():
        return _run_toy(tempered_softmax, distillation_loss, seed, cfg or ToyConfig(), grid_steps)


def _run_toy(tempered_softmax, distillation_loss, seed: int, cfg: ToyConfig, grid_steps: int) -> ToyResult:
    generator = torch.Generator().manual_seed(seed)
    points, labels = make_points(cfg.points_per_class, generator)
    test_points, test_labels = make_points(cfg.test_per_class, generator)
    teacher = train_teacher(points, labels, cfg, seed)
    with torch.no_grad():
        teacher_logits = teacher(points)
    students = {
        "hard": train_softmax_student(points, labels, teacher_logits, distillation_loss, cfg,
                                      temperature=1.0, alpha=0.0),
        "distilled": train_softmax_student(points, labels, teacher_logits, distillation_loss, cfg,
                                           temperature=cfg.temperature, alpha=cfg.alpha)}
    grid, extent = probability_grid(grid_steps)
    with torch.no_grad():
        teacher_test = tempered_softmax(teacher(test_points), 1.0)
        maps = {"teacher": tempered_softmax(teacher(grid), 1.0)}
        scores = {}
        for name, (weight, bias) in students.items():
            scores[name] = score(tempered_softmax(test_points @ weight + bias, 1.0), teacher_test,
                                 test_labels, cfg.tolerance)
            maps[name] = tempered_softmax(grid @ weight + bias, 1.0)
    maps = {name: probs.reshape(grid_steps, grid_steps, len(CLASSES)) for name, probs in maps.items()}
    maps |= {"extent": extent, "points": points, "labels": labels}
    teacher_accuracy = (teacher_test.argmax(-1) == test_labels).float().mean().item()
    return ToyResult(seed=seed, config=cfg, teacher_accuracy=teacher_accuracy, hard=scores["hard"],
                     distilled=scores["distilled"], maps=maps)


def summarise(results: list[ToyResult]) -> dict:
    """metrics.json's `toy`: {"hard": {"accuracy": [per seed], "agreement": [...], ...}, ...}."""
    out = {"seeds": [r.seed for r in results], "tolerance": results[0].config.tolerance,
           "temperature": results[0].config.temperature, "alpha": results[0].config.alpha,
           "teacher_accuracy": [r.teacher_accuracy for r in results]}
    for name in ("hard", "distilled"):
        out[name] = {key: [asdict(getattr(r, name))[key] for r in results]
                     for key in ("accuracy", "agreement", "kl_to_teacher")}
    return out
