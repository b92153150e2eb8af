"""The training methods end to end, as users run them: `python -m ali_dist.train` with 2 Ray
Train workers (gloo), then `--resume` with a larger budget into the same MLflow run:
conditional HALI on the embedded digits (`--preset hali-digits --conditional`: the
single-stage path of `ali`, which `gan` and `vae` share, with the hierarchy and the class
input on top), `gan_inverse` on the toy across its stage boundary (the checkpoint falls in
the GAN stage, the resumed run finishes the encoder stage; `gan_posthoc` shares that path),
and semi-supervised `kplus1` on the digits (its labelled subset, K from the manifest).
Every method trains under DDP with 2 workers in test_ddp.py, resumes bit-exactly from any
checkpoint in test_distributed.py, and trains in Tune trials in test_tune.py (the toy study
trains every unlabelled method; the TorchTrainer searches run conditional HALI and K+1); a
CLI run for each of the others is left out to keep CI's 30-minute budget."""
import pytest
import torch

import ali_dist
from helpers import run_train, start_local_ray

pytestmark = pytest.mark.slow

RESUMED = {   # name: (preset, method, extra flags)
    "hali_conditional": ("hali-digits", "ali", ["--conditional", "--batch-size", "8",
                                                "--probe-labels", "0"]),
    "gan_inverse": ("toy", "gan_inverse", []),
    "kplus1": ("digits", "kplus1", ["--labels", "20", "--batch-size", "8",
                                    "--probe-labels", "0", "--loader", "webdataset"]),
}


# kplus1 and classifier learn on digits in test_kplus1.py
@pytest.mark.parametrize("name", RESUMED)
def test_method_trains_with_two_workers_and_resumes(name, ali_home, tmp_path):
    from mlflow.tracking import MlflowClient
    start_local_ray()
    preset, method, extra = RESUMED[name]
    common = ["--preset", preset, "--method", method, "--workers", "2", "--log-every", "10",
              "--eval-every", "1000", "--checkpoint-every", "10",
              "--storage", str(tmp_path / "ray"), "--name", f"e2e-{name}", *extra]
    first = run_train(common + ["--steps", "20"])
    two_stage = method in ("gan_inverse", "gan_posthoc")
    second = run_train(common + ["--steps", "40", "--resume"])
    assert second["mlflow_run_id"] == first["mlflow_run_id"]
    total = 60 if two_stage else 40           # a two-stage method adds half its budget
    assert second["metrics"]["step"] == total
    client = MlflowClient(second["tracking_uri"])
    run = client.get_run(second["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["method"] == method
    logged = sorted({m.step for m in client.get_metric_history(run.info.run_id, "lr")})
    assert logged == list(range(10, total + 1, 10))          # continuous, nothing repeated
    state = torch.load(f"{second['checkpoint']}/state.pt", weights_only=True)
    assert state["step"] == total and state["config"]["model"]["method"] == method
    assert len(state["param_digests"]) == 2 and len(set(state["param_digests"])) == 1  # in sync
    last = state["optimizers"][sorted(state["optimizers"])[-1]]["state"]
    assert max(int(v["step"]) for v in last.values()) > 0
    if method in ("ali", "kplus1"):           # the optimiser state came along on resume
        assert {int(v["step"]) for v in state["optimizers"]["g"]["state"].values()} == {40}
    model = ali_dist.load(second["model_dir"])
    assert model.name == ("hali" if preset.startswith("hali") else method)
    if preset == "toy":
        x = torch.randn(4, 2)
        if model.encoder is not None:
            assert model.reconstruct(x).shape == x.shape
        assert model.sample(3).shape == (3, 2)
        return
    if method == "kplus1":                    # K from the data's manifest, saved and loaded
        saved = state["config"]
        assert saved["model"]["classes"] == 10 and saved["data"]["labels"] == 20
        assert model.classify(torch.rand(4, 1, 32, 32)).shape == (4, 10)
        assert 0 <= second["metrics"]["classify_error"] <= 1     # the final test error
        return
    assert model.is_hierarchical and model.conditional       # what was trained came back
    x, y = torch.rand(4, 1, 32, 32), torch.arange(4)
    for level in (1, 2):
        assert model.reconstruct(x, y, level=level).shape == x.shape
    assert model.sample(3, y=torch.tensor([7, 7, 7])).shape == (3, 1, 32, 32)
