"""Ray Tune studies of ali-dist.

    python -m tune.toy_study             the paper's toy study (section 4.5, Figure 8): ALI, GAN
                                         and the Figure 8 baselines over random lr, beta1 and
                                         init std; both mode counts; a table; MLflow runs
    python -m tune.search --preset P     an ASHA search of an image preset: one distributed
                                         TorchTrainer per trial; resumable with --resume

Modules, one job each:
    budgets.py       named budgets: trials x steps per trial (ci, laptop, paper)
    search_space.py  the distributions searched and the paired settings of the toy study
    trials.py        what one trial runs: the loop in-process, a baseline, or a TorchTrainer
    record.py        MLflow: the study's parent run, one child run per trial
    report.py        the study table (JSON, Markdown, console) and the best configuration
    figures.py       Figure 8: the best trial's panels per model, side by side
    study.py         building, running and restoring the Tuner
    search.py        the command line (toy_study.py is its toy entry point)
    toy_study.py     the toy study: paired settings, in-process trials, table, Figure 8
    image_search.py  the ASHA search through TorchTrainer, resumable
    convergence.py   one toy run with options the loop lacks (lr decay, D steps): the
                     measurements behind the toy-convergence notes
"""
