"""`python -m data_tools <source> ...`: the command line over the sources and `convert`."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DESCRIPTION = """\
Convert a dataset from its usual on-disk layout into the ali-dist shard format:
WebDataset tar shards OUT/<split>-000000.tar, a DALI index OUT/<split>-000000.idx beside each
(the format DALI's wds2idx writes), and OUT/manifest.json (written last: its presence means the
output is complete). Re-running with the same parameters skips a complete output; --force
rewrites it, byte-identically. Each split is written in a seeded shuffled order; tar keys are
the samples' positions in the source.
"""

EPILOG = """\
examples:
  python -m data_tools digits data/digits
  python -m data_tools cifar10 ~/cifar-10-batches-py data/cifar10 --val 5000
  python -m data_tools svhn ~/svhn data/svhn
  python -m data_tools celeba ~/celeba data/celeba64 --size 64
  python -m data_tools imagefolder ~/tiny-imagenet-200 data/tiny64 --size 64 --name tinyimagenet
  python -m data_tools folder ~/photos data/photos64 --size 64
  python -m data_tools verify data/cifar10
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _output_flags(p: argparse.ArgumentParser) -> None:
    from .convert import DEFAULT_MAX_COUNT, DEFAULT_SHARD_MB
    p.add_argument("out", type=Path, help="output directory (created if missing)")
    p.add_argument("--shard-size", type=_positive_float, default=DEFAULT_SHARD_MB, metavar="MB",
                   help="start a new shard before one would exceed MB megabytes (10^6 bytes) "
                        "(default: %(default)s)")
    p.add_argument("--max-count", type=_positive_int, default=DEFAULT_MAX_COUNT, metavar="N",
                   help="at most N samples per shard (default: %(default)s)")
    p.add_argument("--workers", type=_positive_int, default=min(8, os.cpu_count() or 1),
                   metavar="N", help="processes encoding images; output does not depend on "
                                     "it (default: %(default)s, this machine's cores up to 8)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the shuffled write order and of --val's choice "
                        "(default: %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="rewrite even if OUT already holds a complete output made with the "
                        "same parameters")
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")


def _val_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--val", type=int, default=0, metavar="N",
                   help="carve a val split of N samples out of train (seeded by --seed) "
                        "(default: 0, none)")


def _size_flag(p: argparse.ArgumentParser, default: int | None) -> None:
    p.add_argument("--size", type=_positive_int, default=default, required=default is None,
                   help="output images are SIZE x SIZE" + (
                       " (default: %(default)s)" if default else " (required)"))


def _name_flag(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--name", default=default,
                   help="dataset name recorded in the manifest (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_tools", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("digits", help="scikit-learn's bundled 8x8 digits -> 32x32 gray PNG, "
                                      "train/val/test 1437/180/180 (no download)")
    p.add_argument("out", type=Path, help="output directory (created if missing)")
    p.add_argument("--force", action="store_true", help="rewrite a complete output")
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")

    p = sub.add_parser("cifar10", help="CIFAR-10 python batches -> 32x32 PNG, train/test[/val]")
    p.add_argument("src", type=Path, help="the cifar-10-batches-py directory (data_batch_1..5, "
                                         "test_batch, batches.meta)")
    _output_flags(p)
    _val_flag(p)

    p = sub.add_parser("svhn", help="SVHN *_32x32.mat -> 32x32 PNG, train/test/extra[/val]")
    p.add_argument("src", type=Path, help="directory holding any of train_32x32.mat, "
                                         "test_32x32.mat, extra_32x32.mat")
    _output_flags(p)
    _val_flag(p)

    p = sub.add_parser("celeba", help="CelebA aligned faces + 40 attributes -> SIZE JPEG, "
                                      "train/val/test from list_eval_partition.txt")
    p.add_argument("src", type=Path, help="directory holding img_align_celeba/, "
                                         "list_attr_celeba.txt, list_eval_partition.txt")
    _output_flags(p)
    _size_flag(p, 64)
    p.add_argument("--crop", type=_positive_int, default=140,
                   help="side of the centred square cut from each 178x218 image before "
                        "resizing; 140 is the box (19, 39, 159, 179) (default: %(default)s)")

    p = sub.add_parser("imagefolder", help="class folders (ImageNet / Tiny ImageNet layout) -> "
                                           "SIZE JPEG with class labels")
    p.add_argument("src", type=Path, help="ROOT/<class>/**/<image>, or ROOT/{train,val,test}/"
                                         "<class>/**/<image>; Tiny ImageNet's "
                                         "val/val_annotations.txt is understood")
    _output_flags(p)
    _size_flag(p, None)
    _val_flag(p)
    _name_flag(p, "imagefolder")

    p = sub.add_parser("folder", help="every image under a folder, unlabelled -> SIZE JPEG")
    p.add_argument("src", type=Path, help="folder searched recursively for images")
    _output_flags(p)
    _size_flag(p, None)
    _val_flag(p)
    _name_flag(p, "folder")

    p = sub.add_parser("verify", help="check an output: every listed shard and index present, "
                                      "sizes and SHA-256 as in the manifest")
    p.add_argument("out", type=Path, help="output directory holding manifest.json")
    return parser


def _load(args: argparse.Namespace):
    """The `Dataset` a conversion command describes."""
    if args.command == "cifar10":
        from . import cifar
        return cifar.load(args.src, val=args.val, seed=args.seed)
    if args.command == "svhn":
        from . import svhn
        return svhn.load(args.src, val=args.val, seed=args.seed)
    if args.command == "celeba":
        from . import celeba
        return celeba.load(args.src, size=args.size, crop=args.crop)
    from . import folders
    if args.command == "imagefolder":
        return folders.load_classes(args.src, args.size, val=args.val, seed=args.seed,
                                    name=args.name)
    return folders.load_plain(args.src, args.size, val=args.val, seed=args.seed, name=args.name)


def _verify(out: Path) -> int:
    from . import manifest
    found = manifest.read(out)
    if found is None:
        print(f"error: {out}: no readable manifest of this format", file=sys.stderr)
        return 1
    bad = manifest.problems(out, found, checksums=True)
    for line in bad:
        print(f"error: {line}", file=sys.stderr)
    if not bad:
        counts = ", ".join(f"{s} {i['count']}" for s, i in found["splits"].items())
        print(f"{out}: ok ({found['dataset']}: {counts})")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Sources are imported on demand: scipy and scikit-learn are slow to import.
    from .dataset import SourceError
    try:
        if args.command == "verify":
            return _verify(args.out)
        if args.command == "digits":
            from .digits import convert_digits
            path = convert_digits(args.out, force=args.force, progress=not args.quiet)
        else:
            from .convert import convert
            path = convert(_load(args), args.out, shard_mb=args.shard_size,
                           max_count=args.max_count, seed=args.seed, workers=args.workers,
                           force=args.force, progress=not args.quiet)
    except SourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(path)
    return 0
