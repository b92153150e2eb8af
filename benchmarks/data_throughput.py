"""Input-pipeline throughput: images/s of the DALI loader (CPU decode) against the webdataset
fallback at 32 and 64 px, with the same number of decode threads, measured in one run on
synthetic shards; on a GPU machine with DALI also DALI's `mixed` (GPU) decode.

    python benchmarks/data_throughput.py                          # 32 and 64 px, JPEG
    python benchmarks/data_throughput.py --threads 4 --formats jpg png --images 4096

Prints a table and writes JSON to benchmarks/results/data_throughput_<cpu|gpu>.json, naming
the device (CPU model and cores, GPU) and the load averages before and after. Each row is the
best of `--repeats` runs, the loaders taking turns, so that a busy shared machine (others'
jobs come and go) disturbs each less and all alike; compare rows of one run. The shards
(random smooth images, written with the webdataset library, indexed with DALI's wds2idx)
live in a temp dir. Without DALI (a bare GPU machine) it times what it can: the webdataset
loader.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ali_dist.data.format import index_name, sample_key  # noqa: E402
from ali_dist.data.images import dali_available  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict:
    info = {"cpu": cpu_name(), "cores": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def smooth_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-frequency colour noise: compresses like a photo, unlike white noise."""
    from PIL import Image
    small = rng.integers(0, 256, (max(2, size // 8),) * 2 + (3,), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC))


def write_shards(directory: Path, n: int, size: int, fmt: str, per_shard: int) -> Path:
    import webdataset as wds
    from PIL import Image
    directory.mkdir(parents=True)
    rng = np.random.default_rng(size)
    with wds.ShardWriter(str(directory / "train-%06d.tar"), maxcount=per_shard,
                         verbose=0) as sink:
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(smooth_image(rng, size)).save(
                buf, format="JPEG" if fmt == "jpg" else "PNG", quality=90)
            sink.write({"__key__": sample_key(i), fmt: buf.getvalue(), "cls": i % 10})
    if dali_available():
        from wds2idx import IndexCreator
        for tar in sorted(directory.glob("*.tar")):
            with IndexCreator(str(tar), str(tar.with_name(index_name(tar.name))),
                              verbose=False) as ic:
                ic.create_index()
    return directory


def measure(kind: str, directory: Path, size: int, threads: int, batch: int, batches: int,
            warmup: int, device: torch.device) -> float:
    from ali_dist.data.shards import resolve
    if kind == "dali":
        from ali_dist.data.dali import DaliLoader as Loader
    else:
        from ali_dist.data.wds import WdsLoader as Loader
    loader = Loader(resolve(str(directory)), None, image_size=size, channels=3,
                    batch_size=batch, threads=threads, device=device)
    it = iter(loader)
    for _ in range(warmup):      # worker start-up, pipeline build, first-epoch effects
        next(it)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    for _ in range(batches):
        x, _ = next(it)
    sync()
    dt = time.perf_counter() - t
    assert x.shape == (batch, 3, size, size) and x.device.type == device.type
    del it
    return batches * batch / dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--formats", nargs="+", default=["jpg"], choices=["jpg", "png"])
    ap.add_argument("--threads", type=int, default=2,
                    help="DALI num_threads = DataLoader workers (default 2)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--batches", type=int, default=20, help="timed batches per row")
    ap.add_argument("--warmup", type=int, default=3, help="untimed batches per run")
    ap.add_argument("--repeats", type=int, default=3, help="runs per row; the best counts")
    ap.add_argument("--images", type=int, default=None,
                    help="images per dataset (default: enough for warmup + timed batches)")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/...)")
    args = ap.parse_args(argv)
    load_before = round(os.getloadavg()[0], 2)

    gpu = torch.cuda.is_available()
    have_dali = dali_available()
    n = args.images or args.batch * (args.batches + args.warmup + 1)
    runs = [("dali", "cpu")] if have_dali else []
    runs.append(("webdataset", "cpu"))
    if gpu:
        runs += ([("dali", "cuda")] if have_dali else []) + [("webdataset", "cuda")]
    rows = []
    print(f"{'loader':11s} {'decode':6s} {'px':>4s} {'format':6s} {'images/s':>10s}")
    with tempfile.TemporaryDirectory(prefix="ali-data-bench-") as tmp:
        for fmt in args.formats:
            for size in args.sizes:
                directory = write_shards(Path(tmp) / f"{fmt}{size}", n, size, fmt,
                                         per_shard=max(1, n // 8))
                rates = {run: [] for run in runs}
                for _ in range(args.repeats):       # the loaders take turns
                    for kind, dev in runs:
                        rates[(kind, dev)].append(
                            measure(kind, directory, size, args.threads, args.batch,
                                    args.batches, args.warmup, torch.device(dev)))
                for (kind, dev), got in rates.items():
                    decode = ("mixed" if dev == "cuda" else "cpu") if kind == "dali" else "PIL"
                    rows.append({"loader": kind, "decode": decode, "device": dev,
                                 "image_px": size, "format": fmt, "images_per_s": max(got),
                                 "all_runs": [round(r) for r in got]})
                    print(f"{kind:11s} {decode:6s} {size:4d} {fmt:6s} {max(got):10.0f}",
                          flush=True)
    result = {"benchmark": "data_throughput", "device": device_info(),
              "load_average_1min": {"before": load_before,
                                    "after": round(os.getloadavg()[0], 2)},
              "threads": args.threads, "repeats": args.repeats, "batch": args.batch,
              "timed_batches": args.batches,
              "images_per_dataset": n, "torch": torch.__version__,
              "dali": _version("nvidia.dali") if have_dali else None,
              "webdataset": _version("webdataset"), "rows": rows,
              "notes": None if have_dali else "nvidia.dali not installed: DALI rows skipped"}
    out = Path(args.out or Path(__file__).parent / "results" /
               f"data_throughput_{'gpu' if gpu else 'cpu'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def _version(module: str) -> str | None:
    try:
        return __import__(module, fromlist=["__version__"]).__version__
    except (ImportError, AttributeError):
        return None


if __name__ == "__main__":
    sys.exit(main())
