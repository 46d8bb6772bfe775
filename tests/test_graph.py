"""harness/graph.py: the training step as a CUDA graph (issues 14 and 22).

On the CPU: the eager runner is train_step bit for bit, the lr schedule through a device
tensor (what a captured step reads) equals eager's float schedule over a whole run (cosine
with warm-up), and training with that tensor lr equals training with a float lr; with a
simulated capture, a failed capture records its first error, restores the stream and
gives the pool back. On CUDA (skipped without a GPU): graph and eager agree over 50 steps
with dropout and noise off, dropout masks and CEMNet noise are fresh at every replay, the
final short batch gets its own graph, a host sync makes "auto" fall back to eager with
its first cause (stream restored, pool released) and "on" fail, and no optimizer's step
synchronizes with the host under any graph mode.
"""

from __future__ import annotations

import contextlib
import types

import pytest
import torch
import torch.nn as nn

import methods
from harness.errors import UserError
from harness.graph import StepRunner, current_lr
from harness.spec import RunSpec
from harness.step import make_optimizer, make_scheduler, train_step
from harness.suite import resolve_hparams
from helpers import install_fake_cuda

pytestmark = pytest.mark.usefixtures("one_thread")
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (CUDA graphs); none here")


def setup(method="cnn", arch="lenet5", device="cpu", capturable=False, steps=20, seed=0,
          spec_kw=None, **hp):
    shape = (3, 32, 32) if arch.startswith("vgg") else (1, 28, 28)
    spec = RunSpec(method, arch, "test", hparams=resolve_hparams(method, arch, hp),
                   **(spec_kw or {}))
    torch.manual_seed(seed)
    model = methods.build(spec, shape, 10).to(device).train()
    opt = make_optimizer(spec, model.parameters(), capturable=capturable)
    sched = make_scheduler(spec, opt, steps)
    return spec, model, opt, sched, shape


def batches(shape, n, batch=8, device="cpu", seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, *shape, generator=g).to(device),
             torch.randint(0, 10, (batch,), generator=g).to(device)) for _ in range(n)]


# ------------------------------------------------------------------------------ CPU
@pytest.mark.parametrize("method,hp", [("cnn", {}), ("cemnet", {})])
def test_eager_runner_is_train_step_bit_for_bit(method, hp):
    _, m1, o1, s1, shape = setup(method, **hp)
    _, m2, o2, s2, _ = setup(method, **hp)
    runner = StepRunner(m2, o2, s2, 1.0, "cpu", mode="auto")
    # bit for bit by construction: the eager runner calls train_step itself, so the same
    # kernels run on the same operands in one process
    assert runner.record() == {"step_mode": "eager", "step_mode_reason":
                               "CUDA graphs need a CUDA device; this run is on cpu"}
    for xb, yb in batches(shape, 4):
        torch.manual_seed(5)
        a = train_step(m1, o1, s1, xb, yb, 1.0)
        torch.manual_seed(5)
        b = runner.step(xb, yb)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)


def test_modes_are_checked():
    _, model, opt, sched, _ = setup()
    assert StepRunner(model, opt, sched, 0, "cpu", mode="off").reason == "graph=off"
    with pytest.raises(UserError, match="graph=on: CUDA graphs need a CUDA device"):
        StepRunner(model, opt, sched, 0, "cpu", mode="on")
    with pytest.raises(UserError, match="bad graph mode"):
        StepRunner(model, opt, sched, 0, "cpu", mode="sometimes")


@pytest.mark.parametrize("schedule,warmup", [("cosine", 1.0), ("cosine", 0.0), ("constant", 0.5)])
def test_lr_schedule_through_a_tensor_equals_the_float_schedule(schedule, warmup):
    """A whole run (3 epochs of 7 steps) with linear warm-up and cosine decay to lr_min:
    the tensor the captured step reads holds, at every step, exactly the value the eager
    scheduler computes (in the tensor's precision, that of the step's kernels)."""
    kw = dict(epochs=3, schedule=schedule, warmup_epochs=warmup, lr_min=1e-5)
    steps = 7
    spec, _, o_float, s_float, _ = setup(spec_kw=kw, steps=steps)
    _, _, o_tensor, s_tensor, _ = setup(spec_kw=kw, steps=steps, capturable=True)
    lr_t = o_tensor.param_groups[0]["lr"]
    assert isinstance(lr_t, torch.Tensor) and lr_t.dim() == 0
    seen = []
    for _ in range(spec.epochs * steps + 2):
        f = o_float.param_groups[0]["lr"]
        assert isinstance(f, float)
        assert o_tensor.param_groups[0]["lr"] is lr_t           # updated in place, never replaced
        assert torch.equal(lr_t, torch.tensor(f, dtype=lr_t.dtype)), (len(seen), f, lr_t)
        seen.append(f)
        o_float.step()
        o_tensor.step()
        s_float.step()
        s_tensor.step()
    assert seen[0] == (0.0 if warmup else spec.lr)
    if schedule == "cosine":
        assert seen[spec.epochs * steps] == pytest.approx(spec.lr_min)
    assert current_lr(o_tensor) == pytest.approx(seen[-1], rel=1e-6)


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam", "sgd"])
def test_training_with_the_tensor_lr_equals_the_float_lr(optimizer):
    """RMSprop and SGD: bit for bit. Adam computes its step size lr / (1 - beta1^t) in
    tensor arithmetic (float32) when the lr is a tensor, in double otherwise; its
    normalized update then amplifies that rounding on parameters whose gradient is ~0
    (biases before BatchNorm), so for Adam the losses are compared, to float tolerance."""
    kw = dict(epochs=2, warmup_epochs=0.5, optimizer=optimizer)
    _, m1, o1, s1, shape = setup(spec_kw=kw, steps=3)
    _, m2, o2, s2, _ = setup(spec_kw=kw, steps=3, capturable=True)
    # RMSprop/SGD: the same kernels on the same operands (a float lr and a tensor lr give
    # the same update values), so exact; Adam: see the docstring
    same = torch.equal if optimizer != "adam" else (
        lambda a, b: torch.allclose(a, b, rtol=1e-4, atol=0))
    for xb, yb in batches(shape, 6):
        torch.manual_seed(2)
        a = train_step(m1, o1, s1, xb, yb, 0)
        torch.manual_seed(2)
        b = train_step(m2, o2, s2, xb, yb, 0)
        assert same(a[0], b[0])
    if optimizer != "adam":
        for p, q in zip(m1.parameters(), m2.parameters()):
            assert torch.equal(p, q)


# ----------------------------------------------------------------------------- CUDA
@pytest.fixture
def deterministic_cudnn():
    """Eager and graph run the same kernels; cuDNN's nondeterministic backward algorithms
    would make even two eager runs drift apart over 50 RMSprop steps."""
    old = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old


@needs_cuda
@pytest.mark.usefixtures("deterministic_cudnn")
@pytest.mark.parametrize("method,arch,hp", [
    ("cnn", "lenet5", {"dropout_conv": 0.0, "dropout_fc": 0.0}),
    ("cemnet", "lenet5", {"dropout_conv": 0.0, "dropout_fc": 0.0, "act_std": 0.0}),
    ("cemnet", "lenet5", {"dropout_conv": 0.0, "dropout_fc": 0.0, "act_std": 0.0,
                          "wf": "projected"}),
    ("fcnn", "lenet5", {}),
    ("spectral-pooling", "rippel-sp", {"freq_dropout": False}),
])
def test_graph_equals_eager_over_50_steps_without_randomness(method, arch, hp):
    data = batches((1, 28, 28), 50, batch=16, device="cuda")
    losses = {}
    for mode in ("off", "on"):
        _, model, opt, sched, _ = setup(method, arch, device="cuda", capturable=True, steps=50,
                                        spec_kw={"clip_norm": 15.0}, **hp)
        runner = StepRunner(model, opt, sched, 15.0, "cuda", mode=mode)
        losses[mode] = torch.stack([runner.step(xb, yb)[0] for xb, yb in data]).cpu()
        assert runner.record()["step_mode"] == ("eager" if mode == "off" else "graph")
    torch.testing.assert_close(losses["on"], losses["off"], rtol=1e-4, atol=1e-5)


class _Noisy(nn.Module):
    """Linear -> CEMNet's approximated dropout (multiplicative N(1, 0.25)) -> Dropout(0.3)."""

    def __init__(self):
        from methods.cemnet import ApproxDropout
        super().__init__()
        self.lin = nn.Linear(784, 64)
        self.noise = ApproxDropout(0.5)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        return self.out(self.drop(self.noise(self.lin(x.flatten(1)))))


@needs_cuda
def test_dropout_and_noise_are_fresh_at_every_replay():
    spec = RunSpec("cnn", "lenet5", "test")
    model = _Noisy().cuda().train()
    opt = make_optimizer(spec, model.parameters(), capturable=True)
    seen = {}
    model.noise.register_forward_hook(lambda m, i, o: seen.update(noise=(i[0], o)))
    model.drop.register_forward_hook(lambda m, i, o: seen.update(drop=o))
    runner = StepRunner(model, opt, make_scheduler(spec, opt, 10), 0, "cuda", mode="on",
                        warmup=2)
    xb, yb = batches((1, 28, 28), 1, device="cuda")[0]
    factors, zeros = [], []
    for _ in range(5):                   # 2 eager warm-up steps, capture + replay, 2 replays
        runner.step(xb, yb)
        noise_in, noise_out = seen["noise"]   # in replays: the graph's static tensors
        factors.append((noise_out / noise_in).clone())
        zeros.append((seen["drop"] == 0).clone())
    assert runner.record()["step_mode"] == "graph"
    for a, b in ((factors[2], factors[3]), (factors[3], factors[4])):
        assert (a - b).abs().mean() > 0.05            # a fresh N(1, 0.25) draw per replay
    assert not torch.equal(zeros[3], zeros[4])        # a fresh dropout mask per replay
    assert 0.2 < zeros[4].float().mean() < 0.4


@needs_cuda
def test_frequency_dropout_cutoff_is_fresh_at_every_replay():
    from methods.spectral import SpectralPool2d
    _, model, opt, sched, shape = setup("spectral-pooling", "rippel-sp", device="cuda",
                                        capturable=True, blocks=2)
    pool = next(m for m in model.modules() if isinstance(m, SpectralPool2d))
    runner = StepRunner(model, opt, sched, 0, "cuda", mode="on", warmup=1)
    xb, yb = batches(shape, 1, device="cuda")[0]
    cuts = []
    for _ in range(4):
        runner.step(xb, yb)
        cuts.append(float(pool.last_cutoff))
    assert runner.record()["step_mode"] == "graph"
    assert len(set(cuts[1:])) == 3


@needs_cuda
def test_short_final_batch_gets_its_own_graph():
    _, model, opt, sched, shape = setup(device="cuda", capturable=True)
    runner = StepRunner(model, opt, sched, 0, "cuda", mode="on", warmup=1)
    full, short = batches(shape, 1, batch=8, device="cuda")[0], \
        batches(shape, 1, batch=3, device="cuda", seed=2)[0]
    for _ in range(3):
        runner.step(*full)
        runner.step(*short)
    assert sorted(runner._graphs) == [3, 8]


class _Syncs(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(784, 10)

    def forward(self, x):
        out = self.lin(x.flatten(1))
        return out * 2 if out.sum().item() > 1e9 else out      # a host sync


@needs_cuda
def test_auto_falls_back_to_eager_with_a_reason_and_on_fails():
    """A host sync during capture: "auto" trains on eagerly and records the sync's own
    error (not "operation failed due to a previous error during capture", which ending
    the invalidated capture raises), the current stream is the one before the capture,
    and the graph's private pool is given back: after empty_cache the device holds no
    more memory than before the capture. "on" fails with the same first cause."""
    spec = RunSpec("cnn", "lenet5", "test")
    for mode in ("auto", "on"):
        model = _Syncs().cuda().train()
        opt = make_optimizer(spec, model.parameters(), capturable=True)
        runner = StepRunner(model, opt, make_scheduler(spec, opt, 10), 0, "cuda", mode=mode,
                            warmup=1)
        data = batches((1, 28, 28), 3, device="cuda")
        stream, loss = torch.cuda.current_stream(), None
        runner.step(*data[0])                          # the eager warm-up step
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        reserved = torch.cuda.memory_reserved()
        if mode == "on":
            with pytest.raises(UserError, match="graph=on: capture failed: .*capturing") as err:
                runner.step(*data[1])
            assert "previous error" not in str(err.value)
        else:
            for xb, yb in data[1:]:
                loss, _ = runner.step(xb, yb)
                assert torch.isfinite(loss)
            rec = runner.record()
            assert rec["step_mode"] == "eager" and rec["step_mode_reason"].startswith(
                "capture failed")
            assert "capturing" in rec["step_mode_reason"], rec
            assert "previous error" not in rec["step_mode_reason"], rec
        assert torch.cuda.current_stream() == stream == torch.cuda.default_stream()
        del loss
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        assert torch.cuda.memory_reserved() <= reserved + 2**20   # no private pool left


# -------------------------------------------------- a failed capture, simulated on the CPU
class _Capture:
    """torch.cuda's streams and graph capture as a CPU can simulate them: a stream context
    that tracks the current stream, a CUDAGraph whose capture an illegal host sync
    invalidates (ending it then raises CUDA's secondary error), and the allocator's pool
    calls, recorded."""

    def __init__(self, monkeypatch):
        self.default = types.SimpleNamespace(name="default", wait_stream=lambda other: None)
        self.current = self.default
        self.capturing = self.invalidated = False
        self.pool_calls = []
        capture = self

        class Graph:
            def capture_begin(self, pool=None, **kwargs):
                capture.capturing, capture.invalidated = True, False

            def capture_end(self):
                capture.capturing = False
                if capture.invalidated:
                    raise RuntimeError("CUDA error: operation failed due to a previous error "
                                       "during capture")

            def pool(self):
                return (1, 0)

        @contextlib.contextmanager
        def stream(s):
            before, capture.current = capture.current, s
            try:
                yield
            finally:
                capture.current = before

        cuda = torch.cuda
        monkeypatch.setattr(cuda, "Stream", lambda *a, **k: types.SimpleNamespace(
            name="side", wait_stream=lambda other: None))
        monkeypatch.setattr(cuda, "current_stream", lambda device=None: capture.current)
        monkeypatch.setattr(cuda, "stream", stream)
        monkeypatch.setattr(cuda, "CUDAGraph", Graph)
        monkeypatch.setattr(cuda, "graph_pool_handle", lambda: (0, 7))
        monkeypatch.setattr(cuda, "empty_cache", lambda: self.pool_calls.append("empty_cache"))
        monkeypatch.setattr(cuda.graph, "default_capture_stream", None)
        monkeypatch.setattr(torch._C, "_host_emptyCache", lambda: None, raising=False)
        for name in ("_cuda_endAllocateToPool", "_cuda_releasePool"):
            monkeypatch.setattr(torch._C, name, lambda device, pool, name=name:
                                self.pool_calls.append((name, device, pool)))


class _SyncsWhileCapturing(nn.Module):
    """.item() in the forward pass, which CUDA refuses during a capture."""

    def __init__(self, capture):
        super().__init__()
        self.capture = capture
        self.lin = nn.Linear(784, 10)

    def forward(self, x):
        if self.capture.capturing:
            self.capture.invalidated = True
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
        return self.lin(x.flatten(1))


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_a_failed_capture_records_its_first_cause_restores_the_stream_and_the_pool(
        monkeypatch, mode):
    import harness.graph as graph
    install_fake_cuda(monkeypatch)
    capture = _Capture(monkeypatch)
    # the optimizer is the CPU's: let the runner take it as the capturable one it would be
    monkeypatch.setattr(graph, "_pin_lr", lambda opt, device: None)
    monkeypatch.setattr(graph, "_not_capturable", lambda opt, device: "")
    spec = RunSpec("cnn", "lenet5", "test")
    model = _SyncsWhileCapturing(capture).train()
    opt = make_optimizer(spec, model.parameters())
    runner = StepRunner(model, opt, make_scheduler(spec, opt, 10), 0, "cuda:0", mode=mode,
                        warmup=1)
    data = batches((1, 28, 28), 3)
    runner.step(*data[0])                                   # eager warm-up step
    first = "RuntimeError: CUDA error: operation not permitted when stream is capturing"
    if mode == "on":
        with pytest.raises(UserError, match=f"graph=on: capture failed: {first}"):
            runner.step(*data[1])
    else:
        for xb, yb in data[1:]:                             # the capture fails; eager on
            assert torch.isfinite(runner.step(xb, yb)[0])
        assert runner.record() == {"step_mode": "eager",
                                   "step_mode_reason": f"capture failed: {first}"}
    assert capture.current is capture.default              # not left on the capture stream
    assert [c for c in capture.pool_calls if c != "empty_cache"] == [
        ("_cuda_endAllocateToPool", 0, (0, 7)), ("_cuda_releasePool", 0, (0, 7))]
    assert capture.pool_calls[-1] == "empty_cache"          # its memory back to the device


@needs_cuda
@pytest.mark.parametrize("method", ["cnn", "cemnet"])
@pytest.mark.parametrize("optimizer", ["rmsprop", "adam", "sgd"])
@pytest.mark.parametrize("mode", ["auto", "off"])
def test_no_step_synchronizes_with_the_host(method, optimizer, mode):
    """CUDA's sync debug mode raises on any implicit host synchronization (.item(), a
    device->host copy, nonzero): none in the steps after the warm-up and capture steps
    (eager steps in off and for SGD, replays otherwise; a sync in the capture would have
    made it fail). The optimizer is the training loop's (capturable unless graph=off)."""
    _, model, opt, sched, shape = setup(method, device="cuda", capturable=mode != "off",
                                        spec_kw={"optimizer": optimizer, "clip_norm": 1.0})
    runner = StepRunner(model, opt, sched, 1.0, "cuda", mode=mode)
    data = batches(shape, runner.warmup + 5, batch=16, device="cuda")
    for xb, yb in data[:runner.warmup + 1]:
        runner.step(xb, yb)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for xb, yb in data[runner.warmup + 1:]:
            runner.step(xb, yb)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    expected = "graph" if mode == "auto" and optimizer != "sgd" else "eager"
    assert runner.record()["step_mode"] == expected, runner.record()


@needs_cuda
def test_sgd_runs_eager_and_says_why():
    _, model, opt, sched, _ = setup(device="cuda", capturable=True, spec_kw={"optimizer": "sgd"})
    runner = StepRunner(model, opt, sched, 0, "cuda", mode="auto")
    assert runner.record()["step_mode"] == "eager"
    assert "SGD has no capturable step" in runner.record()["step_mode_reason"]


# ------------------------------------------------------------------------------ the run
def run_spec(**kw):
    from harness.suite import make_spec
    return make_spec("cnn", "lenet5", "synthetic", **{"epochs": 2, "subset": 300, **kw})


def test_a_cpu_run_records_eager_and_why(tmp_path):
    from harness.runner import execute

    rec = execute(run_spec(), results_dir=tmp_path, device="cpu", progress=False)
    assert rec["spec"]["graph"] == "auto"
    assert rec["timing"]["step_mode"] == "eager"
    assert "CUDA device" in rec["timing"]["step_mode_reason"]
    assert "capture_s" not in rec["timing"]


def test_graph_on_without_cuda_is_one_line(tmp_path, capsys):
    from harness.__main__ import main

    code = main(["run", "--dataset", "synthetic", "--subset", "300", "--epochs", "1", "--quiet",
                 "--device", "cpu", "--set", "graph=on", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "graph=on" in err[0] and "CUDA" in err[0]
    assert not any(tmp_path.rglob("result.json"))


@needs_cuda
def test_graph_run_is_recorded_and_resumes_like_an_uninterrupted_one(tmp_path):
    """A whole run in graph mode (capture timed apart), and a resumed one: equal."""
    from harness.runner import execute

    spec = run_spec(epochs=3, subset=600)
    full = execute(spec, results_dir=tmp_path / "full", device="cuda", progress=False)
    assert full["timing"]["step_mode"] == "graph" and full["timing"]["capture_s"] > 0
    assert execute(spec, results_dir=tmp_path / "part", device="cuda", progress=False,
                   stop_after=1) is None
    resumed = execute(spec, results_dir=tmp_path / "part", device="cuda", progress=False)
    assert resumed["timing"]["sessions"] == 2 and resumed["timing"]["step_mode"] == "graph"
    assert resumed["metrics"]["train_loss"] == pytest.approx(full["metrics"]["train_loss"], rel=1e-5)
    assert resumed["metrics"]["test_acc"] == pytest.approx(full["metrics"]["test_acc"], abs=2e-3)
