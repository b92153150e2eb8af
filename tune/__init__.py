"""Ray Tune studies of ali-dist.

    python -m tune.search                the paper's toy study (section 4.5, Figure 8): ALI, GAN
                                         and the Figure 8 baselines over random lr, beta1 and
                                         init std; both mode counts; a table; MLflow runs
    python -m tune.search --recipe       ASHA over the toy's training recipe (schedule, beta1,
                                         batch, update scheme, init, batch norm) for ALI; the
                                         best trained again at fresh seeds
    python -m tune.search --preset P     an ASHA search of an image preset: one distributed
                                         TorchTrainer per trial; resumable with --resume

Modules, one job each:
    space.py         what is searched and how long: named budgets, distributions, the paired
                     settings of the toy study
    trials.py        what one trial runs: the one training loop in-process, or a TorchTrainer
    record.py        MLflow: the study's parent run, one child run per trial
    report.py        the study table (JSON, Markdown, console), the best configuration and
                     Figure 8
    study.py         what every study shares: storage, Ray, the base config, the Tuner
    search.py        the command line: the toy study or an image search
    toy_study.py     the toy study: paired settings, in-process trials, table, Figure 8
    image_search.py  the ASHA search through TorchTrainer, resumable
    recipe.py        the toy recipe search: ASHA in-process, then the best at fresh seeds
"""
