"""Training-step throughput per preset and precision: the model side of the pipeline alone
(batches already on the device), so that data-loading and model costs can be told apart.

    python benchmarks/step_throughput.py                       # every image preset, this device
    python benchmarks/step_throughput.py --presets svhn celeba64 --precisions bf16 fp32

Prints a table and writes JSON to benchmarks/results/step_throughput_<device>.json. Needs
torch only (no Ray, DALI or MLflow), so it runs as is on a bare GPU machine. Ratios between
rows come from one run; absolute numbers mean something on a GPU only.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ali_dist.models import PRESETS, build  # noqa: E402
from ali_dist.step import TrainStep, make_optimizers, resolve_precision  # noqa: E402


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def measure(preset: str, precision: str, batch: int, device: torch.device, steps: int,
            warmup: int, channels_last: bool) -> dict:
    torch.manual_seed(0)
    model = build(preset).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    p = model.preset
    step = TrainStep(model, make_optimizers(model, p.lr, p.beta1, p.beta2), device, precision)
    x = torch.rand(batch, p.channels, p.image_size, p.image_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for _ in range(warmup):
        step(x)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        out = step(x)
    sync()
    dt = (time.perf_counter() - t) / steps
    row = {"preset": preset, "precision": step.precision, "batch": batch,
           "channels_last": channels_last, "ms_per_step": 1000 * dt,
           "images_per_s": batch / dt, "loss_finite": bool(torch.isfinite(out["loss_d"]))}
    if device.type == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=[n for n, p in PRESETS.items() if p.is_image],
                    help="presets to time (default: every image preset)")
    ap.add_argument("--precisions", nargs="+", default=None,
                    help="default: bf16, fp16 and fp32 on GPU; fp32 and bf16 on CPU")
    ap.add_argument("--batch", type=int, default=None,
                    help="batch per step (default: the preset's, 100 or 128)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20 GPU, 3 CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps (default 5 GPU, 1 CPU)")
    ap.add_argument("--channels-last", action="store_true", help="also time channels_last")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/...)")
    args = ap.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    precisions = args.precisions or (["bf16", "fp16", "fp32"] if gpu else ["fp32", "bf16"])
    steps, warmup = args.steps or (20 if gpu else 3), args.warmup or (5 if gpu else 1)
    rows = []
    for name in args.presets:
        for prec in precisions:
            for cl in ([False, True] if args.channels_last else [False]):
                batch = args.batch or PRESETS[name].batch_size
                rows.append(measure(name, resolve_precision(prec, device), batch, device,
                                    steps, warmup, cl))
                r = rows[-1]
                print(f"{name:16s} {r['precision']:5s} cl={int(cl)} batch {batch:4d}  "
                      f"{r['ms_per_step']:9.1f} ms/step  {r['images_per_s']:9.1f} img/s"
                      + (f"  {r['peak_mem_gib']:.2f} GiB" if gpu else ""), flush=True)
    result = {"benchmark": "step_throughput", "device": device_name(device),
              "torch": torch.__version__, "rows": rows}
    out = Path(args.out or Path(__file__).parent / "results" /
               f"step_throughput_{'gpu' if gpu else 'cpu'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
