"""Do reconstructions keep what the input shows? For data with class labels: a classifier
trained on real training images (multinomial logistic regression on raw pixels: cheap, and
it judges the picture, not a feature the encoder could share) labels held-out images and
their reconstructions. `class_acc_real` is its accuracy on the images themselves, the ceiling;
`class_acc_recon` how often a reconstruction is still given its input's class. A model whose
reconstructions ignore the input scores about one class in K (10 % for digits).

The same classifier reads samples: `class_sure_samples` is the share of samples G(z) it gives
one class with probability over 0.9 (a clear digit, not a blend of two), next to
`class_sure_real`, that share on the held-out images (on digits 77 %: the ceiling in practice).
"""
from __future__ import annotations

import warnings

import torch

POOL, TEST = 5_000, 2_000          # training images the classifier learns from; images scored
SAMPLES, SURE = 1_000, 0.9         # samples scored; "sure" = the top class's probability above


@torch.no_grad()
def class_agreement(model, loader) -> dict[str, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    split = "test" if loader.split("test") is not None else "val"
    if loader.split(split) is None:
        return {}               # never judged on training images
    x_train, y_train = loader.labelled("train", POOL)
    x_test, y_test = loader.labelled(split, TEST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(C=0.1, max_iter=1000).fit(
            x_train.flatten(1).float().cpu().numpy(), y_train.cpu().numpy())
    was_training = model.training
    model.eval()
    try:
        recon = torch.cat([model.reconstruct(x_test[i:i + 500]).float().cpu()
                           for i in range(0, len(x_test), 500)])
        gen = torch.Generator().manual_seed(1)          # the same z for every run
        samples = torch.cat([model.sample(500, generator=gen).float().cpu()
                             for _ in range(SAMPLES // 500)])
    finally:
        model.train(was_training)
    labels = y_test.cpu().numpy()
    real = x_test.flatten(1).float().cpu().numpy()
    sure = lambda images: float((clf.predict_proba(images).max(1) > SURE).mean())
    return {"class_acc_real": float(clf.score(real, labels)),
            "class_acc_recon": float(clf.score(recon.flatten(1).numpy(), labels)),
            "class_sure_real": sure(real), "class_sure_samples": sure(samples.flatten(1).numpy())}
