"""The sandboxed side: load a student's solution cells, run grading cases, send back plain arrays.

    python -I autograder/worker.py [--as UID:GID] < job.json    (started by autograder.sandbox, never by hand)

The job (stdin, JSON) holds the extracted cell sources, the case descriptions, a per-run nonce and
the number of the pipe to answer on. Each answer is one line "<nonce> <json>" on that pipe; student
output goes to a size-limited log file instead. The worker judges nothing: it reports what the
student's function returned (arrays, dtypes, modes, losses) and the trusted parent compares.

One worker per submission imports torch and builds every case's inputs, then forks one process
per graded item, before any student cell runs. That process installs the audit hook, runs the
item's cell and the cells before it (which it may call), and its cases; it holds no correct
implementation of anything a cell could borrow. Only train_student's process loads the grader's
distillation loss (grader_loss.py), which the others can neither import nor read.

All inputs are built before the first student cell runs, and an exception counts as the
student's (`"raised": true`) only when it comes out of the call of their function; anything that
fails while the grader reads the result is a `harness_error`, which no check credits.
"""
import base64
import gc
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # -I drops the script's folder

import guard  # noqa: E402
import protocol  # noqa: E402

if __name__ == "__main__":   # a root grader's worker leaves root before numpy and torch load
    guard.start(sys.argv[1:])

import numpy  # noqa: E402,F401  (Tensor.numpy() in encode needs it; loaded before any student cell runs)
import torch  # noqa: E402

import cases  # noqa: E402

MAX_NUMEL = 200_000


def encode(tensor):
    """A tensor as plain data: original dtype name, shape, float64/int64 bytes in base64."""
    t = tensor.detach().cpu()
    if t.numel() > MAX_NUMEL:
        raise ValueError(f"output has {t.numel()} elements, more than the grader accepts")
    dtype = str(t.dtype).replace("torch.", "")
    array = t.to(torch.int64 if not (t.is_floating_point() or t.is_complex()) else torch.float64)
    array = array.numpy().copy()
    return {"dtype": dtype, "shape": list(t.shape), "kind": array.dtype.name,
            "data": base64.b64encode(array.tobytes()).decode("ascii")}


def describe(value):
    """What the student returned: a tensor's data and flags, or only the type's name."""
    if not isinstance(value, torch.Tensor):
        return {"is_tensor": False, "type": type(value).__name__}
    return {"is_tensor": True, "tensor": encode(value), "device": str(value.device),
            "requires_grad": bool(value.requires_grad), "has_grad_fn": value.grad_fn is not None}


def error_info(err):
    try:
        message = str(err)[:160]
    except BaseException:  # noqa: BLE001  a student exception whose __str__ fails
        message = "<unprintable>"
    try:
        return protocol.error(type(err).__name__, message, [k.__name__ for k in type(err).__mro__])
    except BaseException:  # noqa: BLE001  a class whose __name__ or __mro__ misbehaves
        return protocol.error("<unknown>", message, [])


# Every case runs in three steps. prepare: build the inputs from the case description, before
# any student cell has run (so a cell that monkeypatches torch or builtins cannot reach them).
# call: the student's function, the only place where an exception counts as the student's
# ("raised": True). report: describe what came back; a failure there is the grader's
# ("harness_error"), never credited as the student raising.

def prepare_softmax(case):
    logits = cases.make_logits(case["logits"])
    return {"args": (logits,), "kwargs": case.get("kwargs", {}), "logits": logits}


def report_softmax(inputs, out):
    return {"out": describe(out), "input_after": encode(inputs["logits"])}


def prepare_loss(case):
    student = cases.make_logits(case["student"]).requires_grad_()
    teacher = cases.make_logits(case["teacher"]).requires_grad_()
    labels = cases.make_labels(case["labels"])
    return {"args": (student, teacher, labels), "kwargs": case.get("kwargs", {}),
            "student": student, "teacher": teacher}


def report_loss(inputs, out):
    obs = {"out": describe(out)}
    if isinstance(out, torch.Tensor) and out.requires_grad and out.numel() == 1:
        try:
            out.sum().backward()
            student, teacher = inputs["student"], inputs["teacher"]
            obs["student_grad"] = None if student.grad is None else encode(student.grad)
            obs["teacher_grad"] = None if teacher.grad is None else encode(teacher.grad)
        except Exception as err:  # noqa: BLE001
            obs["backward_error"] = error_info(err)
    return obs


def prepare_collect(case):
    teacher = cases.make_model(case["model"])
    return {"args": (teacher, cases.make_loader(case["loader"])), "kwargs": case.get("kwargs", {}),
            "teacher": teacher}


def report_collect(inputs, out):
    return {"out": describe(out), "modes": list(inputs["teacher"].forward_modes),
            "training_after": bool(inputs["teacher"].training)}


def prepare_train(case):
    student = cases.make_model(case["model"])
    optimizer = cases.make_optimizer(case["optimizer"], student.parameters())
    scheduler = cases.make_scheduler(case.get("scheduler"), optimizer)
    kwargs = dict(case.get("kwargs", {}))
    if scheduler is not None:
        kwargs["scheduler"] = scheduler
    return {"args": (student, cases.make_loader(case["loader"]), optimizer), "kwargs": kwargs,
            "student": student, "scheduler": scheduler}


def report_train(inputs, out):
    student, scheduler = inputs["student"], inputs["scheduler"]
    obs = {"type": type(out).__name__, "modes": list(student.forward_modes),
           "params": {k: encode(v) for k, v in student.state_dict().items()},
           "scheduler_steps": None if scheduler is None else int(scheduler.last_epoch)}
    if isinstance(out, (list, tuple)):
        obs["losses"] = [float(v) if type(v) in (float, int) else None for v in out[:10_000]]
        obs["loss_types"] = sorted({type(v).__name__ for v in out})
    return obs


KINDS = {"softmax": (prepare_softmax, report_softmax), "loss": (prepare_loss, report_loss),
         "collect": (prepare_collect, report_collect), "train": (prepare_train, report_train)}


def run_case(fn, case, inputs, manual_seed):
    """Call the student's function on prepared inputs; only an exception of the call is theirs."""
    if "seed" in case:
        manual_seed(case["seed"])
    try:
        out = fn(*inputs["args"], **inputs["kwargs"])
    except BaseException as err:  # noqa: BLE001  sys.exit() in student code is a failed case
        return {"error": error_info(err), "raised": True}
    try:
        return KINDS[case["kind"]][1](inputs, out)
    except BaseException as err:  # noqa: BLE001  e.g. an output whose methods raise
        return {"harness_error": error_info(err)}


def warm_up():
    """Trigger torch's lazy imports (optimizers, autograd, DataLoader) before the audit hook.
    Plain cross-entropy: the grader's distillation loss exists only in train_student's process."""
    model = cases.make_model({"seed": 0, "classes": 3})
    for spec in ({"name": "sgd", "lr": 0.1}, {"name": "adamw", "lr": 0.1}):
        optimizer = cases.make_optimizer(spec, model.parameters())
        scheduler = cases.make_scheduler({"name": "exp", "gamma": 0.5}, optimizer)
        for batch in cases.make_loader({"n": 4, "batch_size": 2, "seed": 0, "classes": 3,
                                        "teacher_scale": 1.0}):
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = torch.nn.functional.kl_div(out.log_softmax(-1), batch["teacher_logits"].softmax(-1),
                                              reduction="batchmean")
            (loss + torch.nn.functional.cross_entropy(out, batch["labels"])).backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()


def load_cells(job, names, send):
    """Run PREAMBLE then the cells `names` (notebook order) in one namespace; errors stay per cell."""
    namespace = {"__name__": "submission"}
    exec(compile(job["preamble"], "<preamble>", "exec"), namespace)
    errors = {}
    for name in names:
        send({"event": protocol.LOADING, "name": name})
        try:
            exec(compile(job["sources"][name], f"<cell {name}>", "exec"), namespace)
            if not callable(namespace.get(name)):
                errors[name] = protocol.error("NameError", f"the cell does not define {name}()")
        except BaseException as err:  # noqa: BLE001  SystemExit too: one cell must not stop the rest
            errors[name] = error_info(err)
    return namespace, errors


def grade_item(item, job, prepared, send, manual_seed, callable_):
    """In a process forked for `item` alone: its cell and the cells before it (which it may call)
    run, then its cases. Later cells never run here, so they cannot help or break this item."""
    if item == "train_student":          # graded with the grader's loss: one bug costs points once
        import grader_loss
        injected = grader_loss.make_distillation_loss()
        del sys.modules["grader_loss"], grader_loss
    guard.install_audit_hook(job["scratch"], job["readable"])
    send({"event": protocol.ITEM, "name": item})
    order = job["order"]
    names = [n for n in order[:order.index(item) + 1] if n not in job["skip_cells"]]
    namespace, errors = load_cells(job, names, send)
    send({"event": protocol.LOADED, "errors": errors})
    fn = namespace.get(item)
    if item == "train_student":
        namespace["distillation_loss"] = injected
    for case in [c for c in job["cases"] if c["fn"] == item]:
        send({"event": protocol.BEGIN, "id": case["id"]})
        if item in errors or not callable_(fn):
            obs = {"error": errors.get(item, protocol.error("NameError", "not defined")), "load": True}
        else:
            obs = run_case(fn, case, prepared.pop(case["id"]), manual_seed)
        try:
            send({"event": protocol.CASE, "id": case["id"], "obs": obs})
        except BaseException as err:  # noqa: BLE001  e.g. json patched or an odd value
            send({"event": protocol.CASE, "id": case["id"], "obs": {"harness_error": error_info(err)}})
    send({"event": protocol.ITEM_DONE, "name": item})


def main():
    job = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    result_fd, prefix = job["result_fd"], job["nonce"] + " "
    write, dumps, exit_now = os.write, json.dumps, os._exit   # bound before student code runs
    manual_seed, callable_ = torch.manual_seed, callable

    def send(message):
        data = (prefix + dumps(message) + "\n").encode("utf-8")
        while data:
            data = data[write(result_fd, data):]

    torch.set_num_threads(1)
    os.chdir(job["scratch"])
    warm_up()
    prepared = {}
    for case in job["cases"]:            # every input exists before the first student cell runs
        prepared[case["id"]] = KINDS[case["kind"]][0](case)
    # One process per item, forked before any student cell loads: this one never runs student
    # code, and the items of one submission cannot reach each other.
    gc.freeze()          # the forks share torch's pages instead of copying them when gc runs
    for item in [n for n in job["order"] if any(c["fn"] == n for c in job["cases"])]:
        pid = os.fork()
        if pid == 0:
            try:
                grade_item(item, job, prepared, send, manual_seed, callable_)
            finally:
                exit_now(0)   # skip atexit hooks and finalizers the student may have registered
        _, status = os.waitpid(pid, 0)
        if status:           # a crash or a limit: the trusted side restarts without this case
            exit_now(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    send({"event": protocol.DONE})
    exit_now(0)


if __name__ == "__main__":
    main()
