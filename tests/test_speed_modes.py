"""Mixed precision (--set precision=bf16|fp16) and compile mode (--set compile=on): what
they compute, how a run records, times and resumes them, that they never mix with fp32 or
eager runs in a comparison, and that they never combine wrongly with the CUDA-graph step."""

import collections
import traceback

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import methods
from harness import step as steps
from harness.errors import UserError
from harness.graph import StepRunner
from harness.runner import execute
from harness.spec import RunSpec
from harness.step import Amp, make_optimizer, make_scheduler, train_step
from harness.suite import make_spec, resolve_hparams
from measure.steps import input_shape
from reports.aggregate import precision_policy

pytestmark = pytest.mark.usefixtures("one_thread")

LOW = (torch.float16, torch.bfloat16, torch.complex32)


class FFTInputs(TorchFunctionMode):
    """Records FFT calls (and complex views, which feed them) whose input is half or
    bfloat16 *as the code passes it*: a TorchFunctionMode sees the call before autocast
    casts anything, so what it finds is what CUDA autocast (which leaves FFTs alone)
    would hand to cuFFT."""

    def __init__(self):
        super().__init__()
        self.low = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        is_fft = "fft" in (getattr(func, "__module__", "") or "") or name == "view_as_complex"
        if is_fft and args and torch.is_tensor(args[0]) and args[0].dtype in LOW:
            where = [f for f in traceback.extract_stack() if "/methods/" in f.filename]
            site = f"{where[-1].filename.rsplit('/', 1)[-1]}:{where[-1].lineno}" if where else "?"
            self.low[f"{name}({args[0].dtype}) at {site}"] += 1
        return func(*args, **(kwargs or {}))


def one_arch(method: str) -> str:
    archs = methods.get(method).archs
    return "lenet5" if "lenet5" in archs else archs[0]


def every_model(device: str = "cpu"):
    """(method, spec, input shape, model in train mode) for each method at its LeNet-5 (or
    first) architecture, default options, seeded."""
    for method in methods.names():
        arch = one_arch(method)
        shape = input_shape(arch)
        spec = RunSpec(method, arch, "bench", hparams=resolve_hparams(method, arch, {}))
        torch.manual_seed(0)
        yield method, spec, shape, methods.build(spec, shape, 10).to(device).train()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_every_fft_runs_in_float32_under_autocast(dtype):
    """Old code: FFC's and GFNet's FFTs took the bf16 output of their 1x1 convolution /
    linear layer (CPU autocast hid it by casting FFT inputs; CUDA autocast does not)."""
    found = {}
    for method, _, shape, model in every_model():
        x, y = torch.randn(2, *shape), torch.tensor([1, 2])
        probe = FFTInputs()
        with probe, torch.autocast("cpu", dtype=dtype):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        model.eval()
        with probe, torch.autocast("cpu", dtype=dtype), torch.no_grad():
            model(x)
        if probe.low:
            found[method] = dict(probe.low)
    assert found == {}


def capture_dtypes(model):
    seen = {}

    def hook(name):
        def record(module, inputs, output):
            seen[name] = output.dtype
        return record

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(hook(name))
    return seen


@pytest.mark.parametrize("policy,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16),
                                          ("fp16", torch.float16)])
def test_amp_step_runs_convolutions_in_the_policy_dtype(policy, dtype):
    spec = make_spec("cnn", "lenet5", "synthetic")
    torch.manual_seed(0)
    model = methods.build(spec, (1, 28, 28), 10).train()
    seen = capture_dtypes(model)
    opt = make_optimizer(spec, model.parameters())
    sched = make_scheduler(spec, opt, 10)
    amp = Amp(policy, "cpu")
    assert (amp.scaler is not None) == (policy == "fp16")
    loss, _ = train_step(model, opt, sched, torch.randn(4, 1, 28, 28), torch.arange(4), 0.0, amp)
    assert set(seen.values()) == {dtype}
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # parameters, their gradients and the optimizer state stay float32
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32
               for p in model.parameters())


def test_fp16_step_skips_an_overflowing_update_and_lowers_the_scale():
    """The GradScaler's contract, which train_step must keep: with a loss scale so large
    that the fp16 gradients overflow, the parameters are not touched (an optimizer step
    on inf gradients would make them NaN) and the scale is lowered."""
    spec = make_spec("cnn", "lenet5", "synthetic")
    torch.manual_seed(0)
    model = methods.build(spec, (1, 28, 28), 10).train()
    opt = make_optimizer(spec, model.parameters())
    sched = make_scheduler(spec, opt, 10)
    amp = Amp("fp16", "cpu")
    amp.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 120)
    before = [p.detach().clone() for p in model.parameters()]
    train_step(model, opt, sched, torch.randn(4, 1, 28, 28), torch.arange(4), 15.0, amp)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert amp.scaler.get_scale() < 2.0 ** 120
    # a sane scale: the step is taken, with finite parameters
    amp.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    train_step(model, opt, sched, torch.randn(4, 1, 28, 28), torch.arange(4), 15.0, amp)
    assert not all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def small_spec(**kw):
    base = dict(epochs=3, subset=600, val_size=200, batch_size=50)
    base.update(kw)
    return make_spec("cnn", "lenet5", "synthetic", **base)


def history(rec_dir):
    import csv
    with open(rec_dir / "history.csv") as f:
        return [{k: v for k, v in r.items() if k not in ("train_s", "eval_s", "data_s")}
                for r in csv.DictReader(f)]


@pytest.mark.parametrize("policy", ["bf16", "fp16"])
def test_mixed_precision_run_records_and_resumes_bit_for_bit(tmp_path, policy):
    from harness import store
    # pinned threads: auto follows the machine's load, and the low-precision kernels
    # round differently with another thread count
    spec = make_spec("cnn", "lenet5", "synthetic", {"precision": policy}, epochs=3,
                     subset=600, val_size=200, batch_size=50, threads=1)
    assert spec.precision == policy
    full = execute(spec, results_dir=tmp_path / "full", progress=False)
    assert execute(spec, results_dir=tmp_path / "part", progress=False, stop_after=1) is None
    if policy == "fp16":     # the loss scale is part of the state a resume continues from
        ckpt = torch.load(store.run_dir(tmp_path / "part", spec) / "checkpoint.pt",
                          weights_only=True)
        assert set(ckpt["scaler"]) >= {"scale", "_growth_tracker"}
    resumed = execute(spec, results_dir=tmp_path / "part", progress=False)
    assert history(store.run_dir(tmp_path / "full", spec)) == \
        history(store.run_dir(tmp_path / "part", spec))
    assert resumed["metrics"] == full["metrics"]
    assert full["spec"]["precision"] == policy
    flags = full["environment"]["precision"]
    assert flags["autocast"] == {"bf16": "bfloat16", "fp16": "float16"}[policy]
    assert flags["tf32_matmul"] is False
    fp32 = execute(small_spec(threads=1), results_dir=tmp_path / "fp32", progress=False)
    assert fp32["environment"]["precision"]["autocast"] is None
    assert fp32["metrics"]["train_loss"] != full["metrics"]["train_loss"]   # autocast did act


def test_new_fields_keep_old_run_ids_and_separate_the_setting():
    base = make_spec("cnn", "lenet5", "mnist")
    assert make_spec("cnn", "lenet5", "mnist", {"compile": "off"}).run_id == base.run_id
    assert "compile" not in base.to_dict()
    on = make_spec("cnn", "lenet5", "mnist", {"compile": "on"})
    assert on.compile is True and on.run_id != base.run_id
    bf16 = make_spec("cnn", "lenet5", "mnist", {"precision": "bf16"})
    fp16 = make_spec("cnn", "lenet5", "mnist", {"precision": "fp16"})
    assert len({base.run_id, on.run_id, bf16.run_id, fp16.run_id}) == 4
    # a compiled run is a setting of its own in every report table
    assert precision_policy(base.to_dict(), {}) == "fp32"
    assert precision_policy(on.to_dict(), {}) == "fp32, compile on"
    assert precision_policy(bf16.to_dict(), {}) == "bf16"
    with pytest.raises(UserError, match="unknown precision"):
        make_spec("cnn", "lenet5", "mnist", {"precision": "fp8"})


@pytest.mark.parametrize("setting,reason", [({"compile": "on"}, "compile=on"),
                                            ({"precision": "fp16"}, "precision=fp16")])
def test_graph_step_never_combines_with_compile_or_fp16(setting, reason):
    """graph=on is refused when the spec is made; graph=auto trains without a CUDA graph
    and says why (the reason is decided before the device is looked at, so the CPU shows
    what a GPU run does)."""
    with pytest.raises(UserError, match=f"graph=on cannot capture a step with {reason}"):
        make_spec("cnn", "lenet5", "mnist", {**setting, "graph": "on"})
    spec = make_spec("cnn", "lenet5", "mnist", setting)
    assert spec.graph == "auto"
    model = nn.Linear(4, 2)
    opt = make_optimizer(spec, model.parameters())
    runner = StepRunner(model, opt, make_scheduler(spec, opt, 10), 0.0, "cpu", mode="auto",
                        amp=Amp(spec.precision, "cpu"), compile=spec.compile)
    assert runner.mode == "eager" and runner.reason.startswith(reason)
    with pytest.raises(UserError, match=f"graph=on: {reason}"):
        StepRunner(model, opt, make_scheduler(spec, opt, 10), 0.0, "cpu", mode="on",
                   amp=Amp(spec.precision, "cpu"), compile=spec.compile)


def test_compile_time_is_timed_apart_from_the_steps(tmp_path, monkeypatch):
    """The first step of each batch size compiles: it goes to timing.compile_s, not to
    train_s (a stand-in for torch.compile that spends 0.5 s on a batch size's first call;
    the real compile: the next test)."""
    import time
    firsts = []

    def slow_first_call(model):
        seen = set()

        def call(x):
            if len(x) not in seen:
                seen.add(len(x))
                firsts.append(len(x))
                time.sleep(0.5)
            return model(x)
        return call

    monkeypatch.setattr(steps, "compiled", slow_first_call)
    # 550 images, batch 100: five steps of 100 and a short one of 50, two epochs
    spec = make_spec("cnn", "lenet5", "synthetic", {"compile": "on"}, epochs=2, subset=750,
                     val_size=200, batch_size=100)
    rec = execute(spec, results_dir=tmp_path, progress=False)
    assert firsts == [100, 50]                 # once per batch size, not per epoch
    t = rec["timing"]
    assert t["compile_s"] >= 1.0 and t["train_s"] < 1.0
    assert rec["spec"]["compile"] is True and t["step_mode"] == "eager"


def test_compiled_lenet5_step_matches_the_eager_step():
    """A real torch.compile'd LeNet-5 training step (inductor, forward and backward):
    the same loss and parameters as the eager step, up to float reassociation. Without
    dropout: inductor draws its random numbers with its own generator (the same
    distribution, other numbers than eager); with SGD: RMSprop turns the rounding noise of
    a bias gradient that BatchNorm makes ~0 into full-size steps of either sign."""
    spec = make_spec("cnn", "lenet5", "synthetic", {"dropout_conv": "0", "dropout_fc": "0",
                                                    "optimizer": "sgd", "momentum": "0.9"})
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(methods.build(spec, (1, 28, 28), 10).train())
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    results = []
    for model, call in ((models[0], models[0]), (models[1], steps.compiled(models[1]))):
        opt = make_optimizer(spec, model.parameters())
        sched = make_scheduler(spec, opt, 10)
        losses = [train_step(call, opt, sched, x, y, 0.0)[0] for _ in range(2)]
        results.append((losses, [p.detach() for p in model.parameters()]))
    (le, pe), (lc, pc) = results
    for a, b in zip(le, lc):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(pe, pc):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none here")


@needs_cuda
@pytest.mark.parametrize("policy", ["bf16", "fp16"])
def test_every_method_trains_a_mixed_precision_step_on_cuda(policy):
    """On a GPU, where autocast leaves FFTs alone and cuFFT refuses bfloat16 and float16
    at 28 x 28: every method's training step runs and gives a finite loss."""
    failed = {}
    for method, spec, shape, model in every_model("cuda"):
        opt = make_optimizer(spec, model.parameters())
        x, y = torch.randn(4, *shape, device="cuda"), torch.arange(4, device="cuda")
        try:
            loss, _ = train_step(model, opt, make_scheduler(spec, opt, 10), x, y, 0.0,
                                 Amp(policy, "cuda"))
            assert torch.isfinite(loss)
        except Exception as exc:  # noqa: BLE001 - collect every method's failure
            failed[method] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    assert failed == {}


@needs_cuda
def test_bf16_step_captures_in_a_cuda_graph():
    """bf16 (autocast with its cache off) is captured by graph=on and replays the same
    steps as the eager bf16 step (up to the kernels' rounding)."""
    spec = make_spec("cnn", "lenet5", "synthetic", {"precision": "bf16", "dropout_conv": "0",
                                                    "dropout_fc": "0"})
    x, y = torch.randn(8, 1, 28, 28, device="cuda"), torch.arange(8, device="cuda") % 10
    losses = []
    for mode in ("off", "on"):
        torch.manual_seed(0)
        model = methods.build(spec, (1, 28, 28), 10).cuda().train()
        opt = make_optimizer(spec, model.parameters(), capturable=mode == "on")
        runner = StepRunner(model, opt, make_scheduler(spec, opt, 100), 0.0, "cuda", mode=mode,
                            amp=Amp("bf16", "cuda"))
        losses.append(torch.stack([runner.step(x, y)[0] for _ in range(6)]))
        assert runner.record()["step_mode"] == ("graph" if mode == "on" else "eager")
    torch.testing.assert_close(losses[0], losses[1], rtol=2e-2, atol=2e-2)
