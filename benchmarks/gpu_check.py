"""One script that checks drivewm's CUDA path and measures it: bf16 autocast, torch.compile, flash
attention through SDPA, an nccl process group, and training throughput of a small transformer.

On a machine without CUDA it says so and exits 0. Each check prints one JSON line; the
throughput comparisons follow the benchmark format (ratio > 1: the GPU path is better).

    python benchmarks/gpu_check.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F


def _timeit(fn, iters: int) -> float:
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / iters


def check(name: str, fn) -> None:
    try:
        out = fn()
        print(json.dumps({"check": name, "ok": True, **(out or {})}))
    except Exception as e:  # noqa: BLE001 - a check reports its failure and the script goes on
        print(json.dumps({"check": name, "ok": False, "error": f"{type(e).__name__}: {e}"[:300]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"check": "cuda", "ok": False, "skipped": "no CUDA device on this machine"}))
        return
    iters = 5 if args.quick else 20
    dev = torch.device("cuda")
    print(json.dumps({"check": "device", "ok": True, "name": torch.cuda.get_device_name(0), "torch": torch.__version__,
                      "bf16": torch.cuda.is_bf16_supported()}))

    def matmul():
        a = torch.randn(8192, 8192, device=dev)
        b = torch.randn(8192, 8192, device=dev)
        t32 = _timeit(lambda: a @ b, iters)
        a16, b16 = a.bfloat16(), b.bfloat16()
        t16 = _timeit(lambda: a16 @ b16, iters)
        flop = 2 * 8192**3
        print(json.dumps({"bench": "gpu_check", "case": "matmul_8192_bf16_vs_fp32", "unit": "TFLOP/s",
                          "ours": round(flop / t16 / 1e12, 1), "reference": round(flop / t32 / 1e12, 1),
                          "ratio": round(t32 / t16, 2), "target": None}))

    def autocast():
        lin = torch.nn.Linear(256, 256).to(dev)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = lin(torch.randn(4, 256, device=dev))
        assert y.dtype == torch.bfloat16
        return {"dtype": str(y.dtype)}

    def flash():
        from torch.nn.attention import SDPBackend, sdpa_kernel

        q = torch.randn(8, 16, 4096, 64, device=dev, dtype=torch.bfloat16)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            t_flash = _timeit(lambda: F.scaled_dot_product_attention(q, q, q, is_causal=True), iters)
        with sdpa_kernel(SDPBackend.MATH):
            t_math = _timeit(lambda: F.scaled_dot_product_attention(q, q, q, is_causal=True), iters)
        print(json.dumps({"bench": "gpu_check", "case": "sdpa_flash_vs_math_L4096", "unit": "ms",
                          "ours": round(t_flash * 1e3, 3), "reference": round(t_math * 1e3, 3),
                          "ratio": round(t_math / t_flash, 2), "target": None}))

    def compiled():
        from drivewm.backbones import BackboneConfig, build_backbone

        net = build_backbone(BackboneConfig(kind="attention", dim=512, depth=6, heads=8)).to(dev)
        x = torch.randn(8, 1024, 512, device=dev)

        def step(m):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                m(x).float().square().mean().backward()

        t_eager = _timeit(lambda: step(net), iters)
        cnet = torch.compile(net)
        t_comp = _timeit(lambda: step(cnet), iters)
        print(json.dumps({"bench": "gpu_check", "case": "attention_backbone_train_step_compile_vs_eager", "unit": "ms",
                          "ours": round(t_comp * 1e3, 2), "reference": round(t_eager * 1e3, 2),
                          "ratio": round(t_eager / t_comp, 2), "target": None}))

    def nccl():
        import torch.distributed as dist

        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29571")
        dist.init_process_group("nccl", rank=0, world_size=1)
        t = torch.ones(4, device=dev)
        dist.all_reduce(t)
        dist.destroy_process_group()
        assert t.sum().item() == 4
        return {"world_size": 1}

    def ssm():
        from drivewm.backbones import BackboneConfig, build_backbone

        net = build_backbone(BackboneConfig(kind="ssm", dim=256, depth=4)).to(dev)
        x = torch.randn(4, 4096, 256, device=dev)
        t = _timeit(lambda: net(x).square().mean().backward(), iters)
        return {"ms_per_step_L4096": round(t * 1e3, 2)}

    for name, fn in [("matmul", matmul), ("bf16_autocast", autocast), ("flash_sdpa", flash),
                     ("torch_compile", compiled), ("nccl", nccl), ("ssm_train", ssm)]:
        check(name, fn)


if __name__ == "__main__":
    main()
