"""The metrics that can run at every `--eval-every` as well as in `python -m ali_dist.evaluate`,
by name (`--eval-metrics`). What every evaluation computes anyway (the reconstruction error,
the grids) is in `evaluate/__init__.py`; this module adds the costlier ones on request.

    fid         FID and KID of samples against the training images (`fid.py`)
    probe       the paper's L2-SVM probe on encoder features (`probe.py`)
    classify    the test error of a model that classifies (K+1: `classify.py`)
    attributes  an attribute classifier's accuracy on reconstructions (`attributes.py`)
"""
from __future__ import annotations

METRICS = ("fid", "probe", "classify", "attributes")


def check_metrics(spec: str | None) -> tuple[str, ...]:
    """A comma-separated list of metric names -> the names; ValueError naming an unknown one."""
    names = tuple(n.strip() for n in (spec or "").split(",") if n.strip())
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)} in --eval-metrics; choose from "
                         f"{', '.join(METRICS)}")
    return names


def applicable(name: str, model, loader) -> str | None:
    """Why metric `name` cannot run for this model and data, or None when it can."""
    from . import _has_classes
    image = model.preset.is_image
    if not image:
        return "image data only"
    if name == "probe":
        if model.encoder is None:
            return "the model has no encoder"
        return None if _has_classes(loader) else "the data has no class labels"
    if name == "classify":
        if not hasattr(model, "classify"):
            return "the model does not classify (train --method kplus1)"
        return None if _has_classes(loader) else "the data has no class labels"
    if name == "attributes":
        if model.encoder is None:
            return "the model has no encoder"
        return None if _has_attributes(loader) else "the data has no attributes"
    return None


def _has_attributes(loader) -> bool:
    from ..data.format import ATTR_EXT
    return getattr(loader, "train", None) is not None and loader.train.label == ATTR_EXT


def compute(name: str, model, loader, eval_cfg) -> dict[str, float]:
    """One metric's values (empty where it does not apply: see `applicable`)."""
    if applicable(name, model, loader) is not None:
        return {}
    if name == "fid":
        from .fid import fid_kid, load_extractor
        return fid_kid(model, loader, load_extractor(eval_cfg.inception), eval_cfg.fid_samples)
    if name == "probe":
        from .probe import probe_model
        return probe_model(model, loader, eval_cfg.probe_labels or 1000, eval_cfg.probe_draws)
    if name == "classify":
        from .classify import classify_error
        return classify_error(model, loader)
    if name == "attributes":
        from .attributes import attribute_accuracy
        return attribute_accuracy(model, loader)
    raise ValueError(f"unknown metric {name!r}")


def periodic(model, loader, eval_cfg, final: bool, is_rank0: bool) -> dict[str, float]:
    """What the training loop adds at an evaluation: the `--metrics` it names, and at the end
    a classifying model's test error. The probe at the end is `evaluate`'s already."""
    if not is_rank0:
        return {}
    names = list(check_metrics(eval_cfg.metrics))
    if final:
        names = [n for n in names if n != "probe"]
        if "classify" not in names:
            names.append("classify")
    out: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        for name in names:
            out.update(compute(name, model, loader, eval_cfg))
    finally:
        model.train(was_training)
    return out
