"""The optimizers of `egotwin_model.optim`: the lr set in place, unknown names refused before
training, and torchao's 8-bit AdamW in the FSDP2 code path of the paper-size joint stage (CPU,
world of one): 8-bit moments, a smaller DCP checkpoint, and an exact resume."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp

from egotwin_model.optim import make_optimizer, set_lr
from egotwin_model.parallel import apply_fsdp, init_distributed, load_checkpoint, parallelize, save_checkpoint
from egotwin_model.run import dit_path, open_run, train_config
from egotwin_model.precompute import load_tensors
from egotwin_model import train as train_mod
from egotwin_model.train import build_stage, train
from tests.test_train import fork_run


def test_set_lr_in_place_for_tensor_lrs_and_unknown_optimizers_are_refused(tiny_run: Path) -> None:
    p = torch.nn.Parameter(torch.zeros(8))
    for name in ("adamw", "adamw8bit"):
        opt = make_optimizer([{"params": [p], "weight_decay": 0.0}], name, lr=1e-3)
        before = opt.param_groups[0]["lr"]
        set_lr(opt, 5e-4)
        after = opt.param_groups[0]["lr"]
        assert float(after) == pytest.approx(5e-4)
        assert (after is before) == isinstance(before, torch.Tensor)  # torchao's tensor lr: changed in place
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer([{"params": [p]}], "sgd", lr=1e-3)
    settings = open_run(tiny_run, None)
    with pytest.raises(ValueError, match="adamw, adamw8bit"):
        train_config("joint", settings.model_config(), optimizer="adam")
    with pytest.raises(ValueError, match="float32, bfloat16"):  # --save-dtype too, before any step
        train_config("joint", settings.model_config(), save_dtype="float16")
    assert train_config("joint", settings.model_config(), save_dtype="bfloat16").save_dtype == "bfloat16"


def test_adamw8bit_without_torchao_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchao.optim", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"train8bit.*torchao==0.18.0"):
        make_optimizer([{"params": [torch.nn.Parameter(torch.zeros(4))]}], "adamw8bit", lr=1e-3)


def _moment_bytes(path: Path) -> dict[str, int]:
    """Stored bytes of each AdamW moment of a DCP checkpoint, by "param_fqn.exp_avg[_sq]"."""
    storage = dcp.FileSystemReader(str(path)).read_metadata().storage_data
    out: dict[str, int] = {}
    for index, info in storage.items():
        if index.fqn.startswith("optim.state.") and index.fqn.rsplit(".", 1)[1] in ("exp_avg", "exp_avg_sq"):
            key = index.fqn.removeprefix("optim.state.")
            out[key] = out.get(key, 0) + info.length
    return out


def test_adamw8bit_fsdp2_joint_stage_has_8bit_moments_a_smaller_checkpoint_and_resumes_exactly(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = init_distributed("cpu")
    settings = open_run(tiny_run, None)
    moments: dict[str, set[str]] = {}
    dtypes: dict[str, set[torch.dtype]] = {}
    sizes: list[int] = []
    names: list[str] = []
    built_optimizers: list[torch.optim.Optimizer] = []
    real_build = train_mod.build_optimizer
    monkeypatch.setattr(train_mod, "build_optimizer",
                        lambda *a, **k: built_optimizers.append(real_build(*a, **k)) or built_optimizers[-1])

    def run(run_dir: Path, steps: int, optimizer: str) -> list[float]:
        tc = train_config("joint", settings.model_config(), batch_size=2, max_steps=steps, checkpoint_every=2,
                          log_every=1, optimizer=optimizer)
        built = build_stage("joint", run_dir, settings, tc)
        parallelize(built, info, tc)
        # eager update: torchao's arithmetic without minutes of C++ compiling on a CPU host
        with torch.compiler.set_stance("force_eager"):
            log = train(built, tc, run_dir, progress=False, info=info)
        opt_state = built_optimizers.pop()
        fqn = {id(p): n for n, p in built.model.named_parameters()}
        names[:] = [fqn[id(p)] for g in opt_state.param_groups for p in g["params"]]
        sizes[:] = [p.numel() for g in opt_state.param_groups for p in g["params"]]
        moments[optimizer] = {type(getattr(s["exp_avg"], "_local_tensor", s["exp_avg"])).__name__
                              for s in opt_state.state.values()}
        dtypes[optimizer] = {s["exp_avg"].dtype for s in opt_state.state.values()}
        return [r["loss"] for r in log]

    full = run(fork_run(tiny_run, tmp_path / "full", ("vae", "t2m")), 4, "adamw8bit")
    resumed = fork_run(tiny_run, tmp_path / "resumed", ("vae", "t2m"))
    first = run(resumed, 2, "adamw8bit")
    assert first + run(resumed, 4, "adamw8bit") == full
    a, b = load_tensors(dit_path(resumed, "joint")), load_tensors(dit_path(tmp_path / "full", "joint"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "OptimState8bit" in moments["adamw8bit"]

    fp32 = fork_run(tiny_run, tmp_path / "fp32", ("vae", "t2m"))
    run(fp32, 4, "adamw")
    assert moments["adamw"] == {"Tensor"}
    # Stored bytes of each moment (DCP metadata): torchao quantises tensors of >= 4096 values (a
    # multiple of its 256-value blocks) to 1 byte a value + one fp32 scale a block + a 256-entry fp32
    # code book; smaller ones stay fp32. DCP pickles each entry (~1.5 KB of framing, allowed below).
    numel = dict(zip(names, sizes))
    stored8, stored32 = (_moment_bytes(r / "joint" / "checkpoints" / "step-4") for r in (resumed, fp32))
    assert stored8.keys() == stored32.keys() and len(stored8) == 2 * len(numel)
    framing = 4096
    for key, length in stored8.items():
        n = numel[key.rsplit(".", 1)[0]]
        quantised = n >= 4096 and n % 256 == 0
        assert stored32[key] >= 4 * n
        assert length <= (n * (1 + 4 / 256) + 1024 if quantised else 4 * n) + framing, (key, n, length)
    big = [k for k in stored8 if numel[k.rsplit(".", 1)[0]] >= 4096 and numel[k.rsplit(".", 1)[0]] % 256 == 0]
    # ~1/4 at paper size; here the code books and framing of 4-65k-value tensors weigh in
    assert big and sum(stored8[k] for k in big) < 0.45 * sum(stored32[k] for k in big)

    # bf16 moments through the same training loop: 2 bytes a value in the checkpoint, bf16 in memory
    bf16 = fork_run(tiny_run, tmp_path / "bf16", ("vae", "t2m"))
    run(bf16, 4, "adamw_bf16")
    assert dtypes["adamw_bf16"] == {torch.bfloat16} and dtypes["adamw"] == {torch.float32}
    stored16 = _moment_bytes(bf16 / "joint" / "checkpoints" / "step-4")
    assert stored16.keys() == stored32.keys()
    for key, length in stored16.items():
        n = numel[key.rsplit(".", 1)[0]]
        assert 2 * n <= length <= 2 * n + framing, (key, n, length)


def test_adamw_bf16_first_step_is_adamw_then_stays_within_bf16_rounding() -> None:
    """Known answer: step 1 uses the unrounded fp32 moments, so it equals torch AdamW bit for bit;
    later steps differ only by the bf16 rounding of the stored moments (< 1 % of an update), and
    the moments are stored in bf16 (chunked updates included)."""
    torch.manual_seed(0)
    ref = [torch.nn.Parameter(torch.randn(300, 7)) for _ in range(3)] + [torch.nn.Parameter(torch.randn(5))]
    ours = [torch.nn.Parameter(p.detach().clone()) for p in ref]
    a = torch.optim.AdamW([{"params": ref, "weight_decay": 0.1}], lr=1e-2, foreach=False)
    b = make_optimizer([{"params": ours, "weight_decay": 0.1}], "adamw_bf16", lr=1e-2)
    b.chunk_numel = 2500  # several chunks a step
    for step in range(6):
        g = torch.Generator().manual_seed(step)
        for p, q in zip(ref, ours):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        a.step()
        b.step()
        diff = max((p - q).abs().max().item() for p, q in zip(ref, ours))
        assert diff == 0.0 if step == 0 else 0 < diff < 1e-2 * 1e-2 * (step + 1)  # lr 1e-2 a step
    assert {s["exp_avg"].dtype for s in b.state.values()} == {torch.bfloat16}
    assert all(float(s["step"]) == 6 for s in b.state.values())


def test_adamw_bf16_under_fsdp2_stores_2_byte_moments_and_resumes_exactly(tmp_path: Path) -> None:
    """FSDP2 (world of one, DTensor shards) + DCP: 4 steps == 2 steps, checkpoint, a fresh model
    and optimizer loaded from it, 2 more; the checkpoint's moments take 2 bytes a value."""
    info = init_distributed("cpu")

    def build() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        root = torch.nn.Module()
        root.blocks = torch.nn.ModuleList(torch.nn.Linear(64, 64) for _ in range(3))
        apply_fsdp(root, [root.blocks], info, param_dtype=torch.float32)
        return root, make_optimizer([{"params": list(root.parameters()), "weight_decay": 0.01}], "adamw_bf16", lr=1e-2)

    def steps(model, opt, start: int, n: int) -> list[float]:
        losses = []
        for i in range(start, start + n):
            x = torch.randn(16, 64, generator=torch.Generator().manual_seed(i))
            h = x
            for block in model.blocks:
                h = torch.tanh(block(h))
            loss = h.pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
        return losses

    model, opt = build()
    full = steps(model, opt, 0, 4)
    model2, opt2 = build()
    first = steps(model2, opt2, 0, 2)
    save_checkpoint(tmp_path / "step-2", model2, opt2, {"step": 2})
    model3, opt3 = build()
    load_checkpoint(tmp_path / "step-2", model3, opt3)
    assert first + steps(model3, opt3, 2, 2) == full
    assert {s["exp_avg"].dtype for s in opt3.state.values()} == {torch.bfloat16}  # not cast up by the load
    assert all(torch.equal(p.full_tensor(), q.full_tensor()) for p, q in zip(model.parameters(), model3.parameters()))
    stored = _moment_bytes(tmp_path / "step-2")
    assert len(stored) == 2 * 6  # weight + bias of 3 layers, two moments each
    for key, length in stored.items():
        n = 64 * 64 if key.split(".")[-2] == "weight" else 64
        assert 2 * n <= length <= 2 * n + 4096, (key, length)  # + DCP framing
