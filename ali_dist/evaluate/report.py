"""One page a person reads per evaluation: the grids, the metric table, the config. A single
self-contained HTML file (the pictures inline), so the MLflow UI's artifact view shows it as it
is, and a copy on disk opens anywhere."""
from __future__ import annotations

import base64
import html
import io

import numpy as np

# What each metric means, for the table (names as logged; HALI adds _z1/_z2, the random test
# extractor prefixes random_ to the FID/KID names).
MEANING = {
    "recon_mse": "mean squared error of held-out images against their reconstructions",
    "recon_mse_random_pair": "the same error against another random held-out image: what a "
                             "model that ignores its input reaches",
    "recon_ratio": "recon_mse / recon_mse_random_pair (the data's mean image scores 0.5: "
                   "below that, reconstructions keep pixels of their input)",
    "fid": "Frechet Inception distance, samples vs training images (lower is better)",
    "fid_heldout": "FID of the held-out split vs the same training images: the floor at this "
                   "sample size",
    "kid": "kernel Inception distance (mean over subsets), samples vs training images",
    "kid_std": "KID's standard deviation over subsets",
    "kid_heldout": "KID of the held-out split vs the training images",
    "fid_samples": "samples FID/KID compared",
    "fid_real": "training images they were compared with",
    "probe_error": "L2-SVM test error on encoder features (paper section 4.3)",
    "probe_error_std": "its standard deviation over label draws",
    "probe_pixels_error": "the same SVM on raw pixels: the baseline the features must beat",
    "probe_labels": "labelled examples per draw",
    "classify_error": "test error of the K+1 discriminator as a classifier",
    "attr_acc_real": "attribute classifier's accuracy on held-out real images",
    "attr_acc_recon": "its accuracy on their reconstructions (HALI's table)",
}


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _meaning(name: str) -> str:
    base = name.removeprefix("random_")
    for suffix in ("_z1", "_z2"):
        if base.endswith(suffix):
            return MEANING.get(base.removesuffix(suffix), "") + f" (from {suffix[1:]})"
    note = " (random test extractor: not an FID)" if name.startswith("random_") else ""
    return MEANING.get(base, "") + (note if base in MEANING else "")


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))


def render(title: str, metrics: dict, grids: dict[str, tuple[np.ndarray, str]],
           config: dict, notes: list[str] | None = None) -> str:
    """The page: `grids` maps a file name to (image, caption that gives its layout)."""
    e = html.escape
    rows = "".join(f"<tr><td><code>{e(k)}</code></td><td>{_fmt(v)}</td><td>{e(_meaning(k))}"
                   f"</td></tr>" for k, v in sorted(metrics.items()))
    pics = "".join(
        f"<figure><img alt='{e(name)}' src='data:image/png;base64,"
        f"{base64.b64encode(png_bytes(img)).decode()}'><figcaption><b>{e(name)}</b>: "
        f"{e(caption)}</figcaption></figure>" for name, (img, caption) in grids.items())
    cfg = "".join(f"<tr><td><code>{e(s)}.{e(k)}</code></td><td>{_fmt(v)}</td></tr>"
                  for s, sub in config.items() if isinstance(sub, dict)
                  for k, v in sorted(sub.items()))
    notes_html = "".join(f"<li>{e(n)}</li>" for n in notes or [])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; max-width: 1100px; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 90%; }}
figure {{ display: inline-block; margin: 0 1.5em 1.5em 0; vertical-align: top;
          max-width: 520px; }}
img {{ image-rendering: pixelated; width: 100%; max-width: 520px; }}
figcaption {{ font-size: 85%; }}
</style></head><body>
<h1>{e(title)}</h1>
<ul>{notes_html}</ul>
<h2>Metrics</h2>
<table><tr><th>metric</th><th>value</th><th>what it is</th></tr>{rows}</table>
<h2>Grids</h2>
{pics}
<h2>Config</h2>
<table>{cfg}</table>
</body></html>
"""
