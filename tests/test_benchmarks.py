"""The benchmark scripts run and write their JSON (numbers are judged on a GPU, not here)."""
import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_step_throughput_writes_a_table_and_json(tmp_path, capsys):
    out = tmp_path / "step.json"
    assert _load("step_throughput").main(["--presets", "digits", "--precisions", "fp32",
                                          "--steps", "1", "--warmup", "1", "--batch", "8",
                                          "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["device"] and res["rows"][0]["preset"] == "digits"
    assert res["rows"][0]["images_per_s"] > 0 and res["rows"][0]["loss_finite"]
    assert "img/s" in capsys.readouterr().out
