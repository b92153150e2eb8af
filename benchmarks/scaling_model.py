"""Data-parallel scaling on paper: how much of each GPU's time goes to waiting for gradients,
at 8, 64 and 512 GPUs, from the step's measured FLOPs (split into forward, D's backward and
E/G's backward) and each DDP wrapper's gradient bytes. Pure arithmetic: no torch needed.

The model (every assumption is a field of `Assumptions`, printed with the results):
- Compute: a GPU runs the step at `gpu_tflops` achieved FLOP/s, plus a fixed cost per step
  that small per-GPU batches cannot hide: the step's kernels (counted on the real step, views
  left out) at `us_per_kernel` each, the launch and dispatch cost of eager PyTorch.
- Links: 8 GPUs per node on NVLink (all-reduce bus bandwidth `nvlink_gbs`); between nodes
  one 400 Gb/s NIC per GPU (rail-optimised, bus bandwidth `nic_gbs` each). An all-reduce of
  S bytes on n GPUs is hierarchical: a reduce-scatter and an all-gather inside the node
  (2 (g-1)/g S / nvlink) and, across M nodes, an all-reduce of each GPU's S/g shard over its
  own NIC (2 (M-1)/M (S/g) / nic); plus a latency per collective (`alpha_us` inside a node,
  `alpha_net_us` per tree level across nodes).
- DDP: each wrapper's gradients go in buckets of `bucket_mb` (the first 1 MB), each reduced
  once ready. A wrapper's all-reduce overlaps its own backward pass; what cannot be hidden is
  max(its comm - its backward time, its last bucket's comm): the reducer waits for the last
  bucket before that wrapper's backward call returns (ALI's D backward, then the E/G one).
- Without overlap (the previous manual reducer): one flat all-reduce of all gradients after
  both backward passes, fully exposed.
- bf16 compression halves the bytes; casting each bucket there and back costs 3 passes over
  the fp32 bytes at `hbm_gbs`.
Two figures per row: data-parallel efficiency = compute / (compute + exposed comm), the share
of the step not spent waiting for gradients (1 on one GPU); and the per-GPU rate against a
GPU with a large batch = the step's FLOPs at `gpu_tflops` / (compute + exposed comm), which
also falls when the per-GPU batch is too small to cover the fixed cost.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

GPUS = (8, 64, 512)


@dataclass(frozen=True)
class Assumptions:
    gpu_tflops: float = 250.0      # achieved bf16 on an H100 SXM: ~25 % of its 989 dense peak
    us_per_kernel: float = 5.0     # eager launch + dispatch per kernel (the step's fixed cost)
    gpus_per_node: int = 8
    nvlink_gbs: float = 360.0      # NVLink 4: 450 GB/s per direction, ~80 % as all-reduce bus bw
    nic_gbs: float = 40.0          # 400 Gb/s = 50 GB/s per GPU, ~80 % achieved
    alpha_us: float = 10.0         # latency of one all-reduce inside a node
    alpha_net_us: float = 6.0      # per tree level across nodes (2 log2 M levels)
    bucket_mb: float = 25.0
    first_bucket_mb: float = 1.0
    hbm_gbs: float = 2500.0        # bf16 compression's casts (H100 HBM3 ~3.3 TB/s peak)

    def describe(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Workload:
    """One preset's step: FLOPs per image (forward, D's backward, E/G's backward) and each
    DDP wrapper's gradient bytes in fp32, in the order their backward passes run."""
    preset: str
    batch: int                       # the preset's per-GPU batch
    flops_fwd: float
    flops_bwd: dict[str, float]      # wrapper -> FLOPs of its backward pass, per image
    grad_bytes: dict[str, float]     # wrapper -> fp32 gradient bytes
    kernels: int = 0                 # kernels per step (at any batch)

    def floor_s(self, a: "Assumptions") -> float:
        return self.kernels * a.us_per_kernel * 1e-6

    @property
    def flops(self) -> float:
        return self.flops_fwd + sum(self.flops_bwd.values())


def allreduce_s(nbytes: float, n: int, a: Assumptions) -> float:
    """Seconds for one all-reduce of nbytes on n GPUs (hierarchical, see the module's doc)."""
    if n <= 1:
        return 0.0
    g = min(n, a.gpus_per_node)
    nodes = math.ceil(n / a.gpus_per_node)
    t = 2 * (g - 1) / g * nbytes / (a.nvlink_gbs * 1e9) + a.alpha_us * 1e-6
    if nodes > 1:
        t += 2 * (nodes - 1) / nodes * (nbytes / g) / (a.nic_gbs * 1e9)
        t += 2 * math.ceil(math.log2(nodes)) * a.alpha_net_us * 1e-6
    return t


def buckets(nbytes: float, a: Assumptions) -> list[float]:
    """DDP's buckets for a wrapper's gradients (sizes in bytes): 1 MB first, then bucket_mb."""
    first, cap = a.first_bucket_mb * 2**20, a.bucket_mb * 2**20
    out = [min(nbytes, first)]
    rest = nbytes - out[0]
    while rest > 0:
        out.append(min(rest, cap))
        rest -= out[-1]
    return out


def step_time(w: Workload, per_gpu_batch: float, n: int, a: Assumptions, overlap: bool,
              bf16: bool) -> dict:
    rate = a.gpu_tflops * 1e12
    ideal = per_gpu_batch * w.flops / rate
    compute = ideal + w.floor_s(a)
    scale = 0.5 if bf16 else 1.0
    cast = (3 * sum(w.grad_bytes.values()) / (a.hbm_gbs * 1e9)) if bf16 and n > 1 else 0.0
    if overlap:
        exposed = 0.0
        for wrapper, nbytes in w.grad_bytes.items():
            bs = [b * scale for b in buckets(nbytes, a)]
            comm = sum(allreduce_s(b, n, a) for b in bs)
            backward = per_gpu_batch * w.flops_bwd[wrapper] / rate
            exposed += max(comm - backward, allreduce_s(bs[-1], n, a))
    else:
        exposed = allreduce_s(sum(w.grad_bytes.values()) * scale, n, a)
    exposed += cast
    total = compute + exposed
    return {"gpus": n, "per_gpu_batch": per_gpu_batch, "compute_ms": 1e3 * compute,
            "exposed_comm_ms": 1e3 * exposed, "step_ms": 1e3 * total,
            "images_per_s_per_gpu": per_gpu_batch / total,
            "dp_efficiency": compute / total, "vs_large_batch": ideal / total}


def table(w: Workload, a: Assumptions, global_batch: int | None = None) -> list[dict]:
    """Rows for 8/64/512 GPUs x {no overlap, overlap, overlap + bf16}: with the preset's
    per-GPU batch (the global batch grows with the GPUs), and with a fixed global batch
    (the per-GPU batch shrinks)."""
    rows = []
    for regime, batch_of in (("per-GPU batch fixed", lambda n: w.batch),
                             (f"global batch {global_batch}",
                              lambda n: global_batch / n) if global_batch else (None, None)):
        if regime is None:
            continue
        for n in GPUS:
            for name, overlap, bf16 in (("no overlap (manual all-reduce)", False, False),
                                        ("DDP overlap", True, False),
                                        ("DDP overlap + bf16 grads", True, True)):
                r = step_time(w, batch_of(n), n, a, overlap, bf16)
                rows.append({"preset": w.preset, "regime": regime, "comm": name, **r})
    return rows


def limits(w: Workload, a: Assumptions) -> dict:
    """Where the model says scaling stops: the per-GPU batch below which the fixed step cost
    is more than 10 % of the step, and the GPU count from which the exposed comm of the
    plain DDP step at the preset's batch exceeds 10 % of it (None: not up to 4,096)."""
    rate = a.gpu_tflops * 1e12
    b_min = 9 * w.floor_s(a) * rate / w.flops     # the fixed cost <= 10 % of the step
    link_n = None
    n = 2
    while n <= 4096:
        r = step_time(w, w.batch, n, a, overlap=True, bf16=False)
        if r["exposed_comm_ms"] > 0.1 * r["step_ms"]:
            link_n = n
            break
        n *= 2
    return {"preset": w.preset, "min_per_gpu_batch_for_90pct": math.ceil(b_min),
            "gpus_where_comm_exceeds_10pct": link_n}
