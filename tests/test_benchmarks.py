"""The training-throughput benchmark runs in its small CPU configuration and writes its table
and JSON (numbers are judged by a person on a quiet machine or a GPU, not here): every section
reports the fields the README's Performance table and the issue's targets are read from."""
import importlib.util
import json
import math
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod          # as an import would: dataclasses and pickling look here
    spec.loader.exec_module(mod)
    return mod


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_train_throughput_quick_run_writes_every_section(tmp_path, capsys, ali_home):
    from helpers import start_local_ray
    start_local_ray()                        # the session's Ray, reused by the ray section
    out = tmp_path / "bench.json"
    assert _load("train_throughput").main(["--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert res["device"]["name"] and res["device"]["type"] == "cpu" and not res["skipped"]

    f = res["flops"]                          # counted on the real step, split consistently
    assert 0.9e9 < f["per_image"] < 1.1e9     # svhn: about 1.0 GFLOP per image per step
    assert f["split_total_matches"] and set(f["per_image_backward"]) == {"d", "g"}

    rows = {r["name"]: r for r in res["step"]["rows"]}
    assert set(rows) >= {"reference eager", "ours", "ours + fused Adam",
                         "ours + channels-last", "ours + bf16 autocast"}
    assert rows["reference eager"]["vs_reference"] == 1.0
    for r in rows.values():
        for key in ("ms_per_step", "images_per_s", "vs_reference", "achieved_tflops",
                    "peak_tflops", "share_of_peak", "peak_memory_mib"):
            assert _positive(r[key]), (r["name"], key)
        assert r["vs_reference_min"] <= r["vs_reference"] <= r["vs_reference_max"]

    loader = {r["loader"].split()[0]: r for r in res["loader"]["rows"]}
    assert set(loader) == {"dali", "device"} and res["loader"]["cache_mib"] > 0
    for r in loader.values():
        assert 0 <= r["data_wait_share"] < 1 and _positive(r["compute_ms"])

    assert math.isfinite(res["ray"]["overhead_pct"]) and len(res["ray"]["pairs"]) == 1
    assert all(_positive(p["ray_images_per_s"]) for p in res["ray"]["pairs"])

    ddp = {r["step"]: r for r in res["ddp"]["rows"]}
    assert set(ddp) >= {"DDP", "DDP + bf16 gradients", "previous manual all-reduce"}
    assert all(r["ranks_identical"] and _positive(r["vs_manual"]) for r in ddp.values())

    sc = res["scaling"]
    assert {r["gpus"] for r in sc["rows"]} == {8, 64, 512}
    assert {r["comm"] for r in sc["rows"]} == {"no overlap (manual all-reduce)", "DDP overlap",
                                              "DDP overlap + bf16 grads"}
    assert all(0 < r["dp_efficiency"] <= 1 for r in sc["rows"])
    assert set(res["targets"]) >= {"ours_vs_reference", "ray_overhead_pct", "ddp_vs_manual",
                                   "celeba64_64_gpus_efficiency"}
    for title in ("step (batch 8", "loader", "Ray Train (1 worker)", "2 gloo workers",
                  "data-parallel efficiency", "targets:"):
        assert title in printed


def test_scaling_model_overlap_hides_what_the_backward_pass_covers():
    sm = _load("scaling_model")
    a = sm.Assumptions()
    w = sm.Workload("x", 100, flops_fwd=7e9, flops_bwd={"d": 4e9, "g": 12e9},
                    grad_bytes={"d": 60e6, "g": 75e6}, kernels=300)
    one = sm.step_time(w, 100, 1, a, overlap=True, bf16=False)
    assert one["exposed_comm_ms"] == 0 and one["dp_efficiency"] == 1
    flat, ddp, bf16 = (sm.step_time(w, 100, 64, a, overlap=o, bf16=b)
                       for o, b in ((False, False), (True, False), (True, True)))
    assert ddp["exposed_comm_ms"] < flat["exposed_comm_ms"]   # buckets overlap the backward
    slow = sm.Assumptions(nic_gbs=2.0)                         # a slow link: bf16 pays off
    assert sm.step_time(w, 100, 64, slow, True, True)["step_ms"] < \
        sm.step_time(w, 100, 64, slow, True, False)["step_ms"]
    assert sm.allreduce_s(1e8, 64, a) > sm.allreduce_s(1e8, 8, a)   # the node boundary
    assert sum(sm.buckets(60e6, a)) == 60e6 and sm.buckets(60e6, a)[0] == 2**20


def test_toy_step_quick_run_writes_the_table_and_k1_batched_matches(tmp_path, capsys):
    """The toy step benchmark (issue 13) in its quick form: every variant has its numbers,
    FLOPs are counted on the real step (about 1.0 GFLOP per trial-step), and K trials as one
    batched model at K=1 trains exactly as the ordinary step on the same weights and batch."""
    out = tmp_path / "toy.json"
    assert _load("toy_step").main(["--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["cpu"] and res["torch"] and res["threads"] == 1 and res["quick"]
    assert 0.95e9 < res["flops_per_step"] < 1.1e9
    assert res["peak_note"] and _positive(res["sgemm_gflops"]["fp32"])
    rows = {r["variant"]: r for r in res["rows"]}
    assert set(rows) >= {"eager fp32", "bf16 autocast", "batched K=1", "batched K=2"}
    assert rows["eager fp32"]["vs_eager"] == 1.0 and rows["batched K=2"]["trials"] == 2
    for r in rows.values():
        for key in ("ms_per_step", "trial_steps_per_s", "vs_eager", "flops_per_trial_step",
                    "gflops", "share_of_sgemm"):
            assert _positive(r[key]), (r["variant"], key)
    # the batched model counts K times one trial's arithmetic
    assert abs(rows["batched K=2"]["flops_per_trial_step"] / res["flops_per_step"] - 1) < 0.01
    eq = res["k1_equivalence"]
    assert {"loss_d", "loss_g"} <= set(eq["loss_names"])
    assert eq["metric_max_abs_diff_step0"] < 1e-6 and eq["metric_max_abs_diff"] < 1e-5
    assert eq["state_max_abs_diff"] < 1e-5
    assert "trial-steps/s" in capsys.readouterr().out
