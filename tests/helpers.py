"""Helpers shared by test files (fixtures live in conftest.py)."""
from __future__ import annotations


def run_train(argv: list[str]) -> dict:
    """The CLI's path in-process: flags -> resolved config -> train()."""
    from ali_dist import config as config_lib
    from ali_dist.train import build_parser, train
    args = build_parser().parse_args(argv)
    return train(config_lib.resolve(config_lib.from_args(args)))
