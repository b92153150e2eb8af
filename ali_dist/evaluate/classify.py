"""The test error of a model that classifies (a K+1 discriminator: `models/kplus1.py`)."""
from __future__ import annotations

import torch

BATCH = 500


@torch.no_grad()
def classify_error(model, loader) -> dict[str, float]:
    """Share of the test split (the validation split where there is none) that
    `model.classify` gets wrong: `classify_error`."""
    from .probe import TEST_MAX
    split = "test" if loader.split("test") is not None else "val"
    x, y = loader.labelled(split, TEST_MAX)
    if y is None or y.dim() != 1:
        raise ValueError("the classifier's test error needs class labels (.cls)")
    was_training = model.training
    model.eval()
    try:
        pred = torch.cat([model.classify(x[i:i + BATCH]).argmax(1).cpu()
                          for i in range(0, len(x), BATCH)])
    finally:
        model.train(was_training)
    return {"classify_error": float((pred != y.cpu()).float().mean()),
            "classify_test_images": float(len(y))}
