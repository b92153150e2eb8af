"""The driver's progress lines (`ali_dist/console.py`), fed reports as rank 0 sends them."""
import io

from ali_dist.console import Console


def test_progress_counts_every_stage_of_a_two_stage_method():
    """--steps 100 of gan_posthoc trains 150 steps (a GAN, then its encoder): the loop's
    steps_total, not the flag, is what the progress line counts to."""
    out = io.StringIO()
    console = Console(global_batch=200, steps=100, epochs=None, stream=out)
    for step in (50, 150):
        console.report({"step": step, "steps_total": 150, "loss_d": 1.0, "loss_g": 1.0,
                        "d_acc": 0.5, "samples_per_s": 2000.0})
    lines = out.getvalue().splitlines()
    assert "step 50/150 (33%)" in lines[0] and "eta 10s" in lines[0]   # 100 steps at 10/s
    assert "step 150/150 (100%)" in lines[1]
    console.report({"step": 50, "loss_d": 1.0, "samples_per_s": 2000.0})   # older workers
    assert "step 50/100 (50%)" in out.getvalue().splitlines()[2]
