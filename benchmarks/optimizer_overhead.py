"""Optimizer step time over many small FSDP2-sharded parameters: the per-tensor cost of each
`egotwin_model.optim` optimizer, apart from its arithmetic.

The paper-size DiT has 1475 trainable tensors. With tensors this small (default 64 x 64) the
arithmetic is negligible and a step's time is what the optimizer pays per tensor: Python,
DTensor dispatch, compiled-call guards, kernel launches. Prints ONE JSON line: per optimizer
the ms per step and us per tensor, and its ratio to ``adamw`` (the reference).

    python benchmarks/optimizer_overhead.py                     # CPU, world of one
    python benchmarks/optimizer_overhead.py --device cuda
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from _timing import time_calls  # benchmarks/_timing.py (this script's folder)

from egotwin_model.optim import OPTIMIZERS, make_optimizer
from egotwin_model.parallel import apply_fsdp, init_distributed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tensors", type=int, default=1475, help="parameter tensors (paper-size DiT: 1475)")
    ap.add_argument("--size", type=int, default=64, help="each tensor is size x size (>= 64: torchao quantises it)")
    ap.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps (state creation, compiles)")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    info = init_distributed(args.device)
    result: dict = {"benchmark": "optimizer_overhead", "device": torch.cuda.get_device_name(info.device)
                    if info.device.type == "cuda" else "cpu", "torch": torch.__version__,
                    "tensors": args.tensors, "tensor_shape": [args.size, args.size], "fsdp2": True}
    for name in args.optimizers:
        torch.manual_seed(0)
        root = nn.Module()
        root.blocks = nn.ModuleList(nn.Linear(args.size, args.size, bias=False, device=info.device)
                                    for _ in range(args.tensors))
        apply_fsdp(root, [root.blocks], info, param_dtype=torch.float32)
        for p in root.parameters():
            p.grad = torch.randn_like(p)
        opt = make_optimizer([{"params": list(root.parameters()), "weight_decay": 0.0}], name, lr=1e-3,
                             device=info.device)
        seconds = time_calls(opt.step, args.repeats, args.warmup, info.device)
        result[name] = {"ms_per_step": round(seconds * 1e3, 2), "us_per_tensor": round(seconds / args.tensors * 1e6, 1)}
    if "adamw" in result:
        for name in args.optimizers:
            result[name]["ratio_to_adamw"] = round(result[name]["ms_per_step"] / result["adamw"]["ms_per_step"], 2)
    if info.is_main:
        print(json.dumps(result))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
