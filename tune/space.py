"""What a study searches and how long: the named budgets (trials x steps per trial;
`--steps`, `--epochs` and `--trials` override them) and the distributions drawn around the
preset's own values (the one place hyper-parameters live is `ali_dist/models/tables.py`): a
decade either side for the learning rate and the init std (log-uniform), and a fixed band for
beta1 (uniform).

The toy study trains every model of a setting with the same (lr, beta1, init std, seed): the
draws are paired, so "ALI vs GAN" compares the two at identical hyper-parameters, and the
spread across settings is the paper's "random learning rate and beta1, random init std".
The recipe search (`recipe_space`) draws what the paper leaves open instead, for ALI alone.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ali_dist.models import get_preset


@dataclass(frozen=True)
class Budget:
    trials: int                    # random settings (toy: per model; images: in the search)
    steps: int | None = None       # per trial; None with epochs None: the preset's own budget
    epochs: float | None = None
    eval_every: int = 1000         # steps between evaluations (and Tune reports for images)
    about: str = ""

    def with_overrides(self, trials=None, steps=None, epochs=None,
                       eval_every=None) -> "Budget":
        b = self
        if steps is not None or epochs is not None:   # one of the two decides the length
            b = replace(b, steps=steps, epochs=epochs)
        if trials is not None:
            b = replace(b, trials=trials)
        if eval_every is not None:
            b = replace(b, eval_every=eval_every)
        if b.trials < 1:
            raise ValueError(f"--trials must be at least 1, got {b.trials}")
        if (b.steps is not None and b.steps < 1) or (b.epochs is not None and b.epochs <= 0):
            raise ValueError(f"a trial needs a positive --steps or --epochs "
                             f"(got steps={b.steps}, epochs={b.epochs})")
        if b.eval_every < 1:
            raise ValueError(f"--eval-every must be at least 1, got {b.eval_every}")
        if b.steps is not None:                        # at least one evaluation before the end
            b = replace(b, eval_every=min(b.eval_every, b.steps))
        return b

    def describe(self, kind: str) -> str:
        length = (f"{self.steps} steps" if self.steps else
                  f"{self.epochs:g} epochs" if self.epochs else "the preset's budget")
        per = {"toy": " per model", "image": " in the search"}.get(kind, "")
        return f"{self.trials} trials{per} x {length}, evaluated every {self.eval_every} steps"


# kind -> name -> Budget. "toy" is the in-process study, "image" the TorchTrainer search.
# One step of the toy preset's recipe (batch 200, 2 D updates per E/G update) takes ~60 ms
# on one core: an ALI trial of the laptop budget ~3 minutes, of the long one ~20.
BUDGETS: dict[str, dict[str, Budget]] = {
    "toy": {
        "ci": Budget(trials=2, steps=300, eval_every=150,
                     about="an end-to-end check in about a minute"),
        "laptop": Budget(trials=3, steps=3000, eval_every=1000,
                         about="tens of minutes on a laptop; the recipe at 3,000 steps"),
        "long": Budget(trials=5, steps=20_000, eval_every=2000,
                       about="hours on a laptop; the recipe's own length"),
        # The ALI paper gives no epoch count for the toy; PacGAN's re-run of this setup
        # trained 400 epochs of the 100,000 samples (400,000 steps at batch 100).
        "paper": Budget(trials=10, epochs=400, eval_every=10_000,
                        about="the paper's 10 random settings per model, PacGAN's 400 epochs"),
    },
    # The toy recipe search (`--recipe`): ALI alone, ASHA stopping the poor trials early.
    "recipe": {
        "ci": Budget(trials=4, steps=200, eval_every=100,
                     about="an end-to-end check of the recipe search"),
        "laptop": Budget(trials=16, steps=20_000, eval_every=2000,
                         about="10-26 minutes per full trial on one core (batch 50-200); "
                               "76 minutes on 2 cores as measured (README)"),
        "long": Budget(trials=48, steps=60_000, eval_every=6000,
                       about="the issue's ceiling: 30 minutes per full trial on one core"),
    },
    "image": {
        "ci": Budget(trials=2, steps=40, eval_every=20,
                     about="an end-to-end check of the search plumbing"),
        "laptop": Budget(trials=4, steps=600, eval_every=200,
                         about="a small ASHA search in tens of minutes on CPU"),
        "long": Budget(trials=8, steps=5000, eval_every=500, about="hours on one GPU"),
        "paper": Budget(trials=16, eval_every=2000,
                        about="the preset's full epochs (the paper's) per trial, ASHA cutting "
                              "the poor ones early"),
    },
}


def get_budget(kind: str, name: str) -> Budget:
    try:
        return BUDGETS[kind][name]
    except KeyError:
        raise ValueError(f"unknown budget {name!r}; choose one of "
                         f"{', '.join(BUDGETS[kind])}") from None



DECADES = 1.0               # log10 half-width of the lr and init-std ranges
BETA1 = (0.1, 0.9)          # the paper's 0.5 and PacGAN's 0.8 both inside


def _around(value: float):
    from ray import tune     # here: the budgets above serve `--help` without importing Ray
    return tune.loguniform(value / 10 ** DECADES, value * 10 ** DECADES)


def toy_space(preset_name: str) -> dict:
    """lr, beta1 and init std, as in the paper's toy study."""
    p = get_preset(preset_name)
    from ray import tune
    return {"lr": _around(p.lr), "beta1": tune.uniform(*BETA1), "init_std": _around(p.init_std)}


# What the paper leaves open, for the toy recipe search: the rate and its schedule, beta1,
# the batch, the update scheme (with D steps per E/G step where the updates alternate), the
# init std and batch norm's running-statistics momentum.
SCHEMES = ({"update": "simultaneous", "d_steps": 1}, {"update": "alternating", "d_steps": 1},
           {"update": "alternating", "d_steps": 2})


def recipe_space() -> dict:
    from ray import tune
    return {"lr": tune.loguniform(1e-4, 3e-3), "beta1": tune.uniform(*BETA1),
            "init_std": tune.loguniform(0.005, 0.2), "batch_size": tune.choice([50, 100, 200]),
            "scheme": tune.choice(list(SCHEMES)), "bn_momentum": tune.loguniform(0.01, 0.5),
            "lr_decay": tune.choice(["cosine", "linear"]), "lr_hold": tune.uniform(0.0, 0.5),
            "lr_final": tune.loguniform(0.003, 0.1)}


def image_space(preset_name: str) -> dict:
    """lr and beta1 (the mission's search for image presets; init std stays the paper's)."""
    p = get_preset(preset_name)
    from ray import tune
    return {"lr": _around(p.lr), "beta1": tune.uniform(*BETA1)}


def draw_settings(space: dict, n: int, seed: int) -> list[dict]:
    """n settings drawn from `space` with a seeded generator (reproducible studies), each with
    its own training seed and its index."""
    rs = np.random.RandomState(seed)
    out = []
    for i in range(n):
        s = {k: float(d.sample(random_state=rs)) for k, d in space.items()}
        s.update(seed=int(rs.randint(0, 2 ** 31 - 1)), index=i)
        out.append(s)
    return out


def describe(space: dict) -> str:
    parts = []
    for k, d in space.items():
        if hasattr(d, "categories"):
            parts.append(f"{k} in {{{', '.join(short(c) for c in d.categories)}}}")
            continue
        kind = type(d.get_sampler()).__name__.replace("_", "").lower()
        parts.append(f"{k} ~ {kind}({d.lower:.3g}, {d.upper:.3g})")
    return ", ".join(parts)


def short(value) -> str:
    """A categorical value as the table shows it ({"update": "alternating", "d_steps": 2} ->
    "alternating x2")."""
    if isinstance(value, dict) and "update" in value:
        return value["update"] + (f" x{value['d_steps']}" if value.get("d_steps", 1) > 1 else "")
    return str(value)
