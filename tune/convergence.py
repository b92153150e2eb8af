"""`python -m tune.convergence`: how fast one toy model converges, with finer probes than a
training run logs, under the loop's update schemes and learning-rate schedules
(`ali_dist.schedule`) and two options the loop does not offer: extra discriminator steps and
a discriminator learning-rate multiplier. The measurements behind the toy presets' values.

Trains in this process (one thread) with `ali_dist.step.TrainStep` and prints one JSON line per
evaluation: both mode counts, the share of high-quality samples and the reverse KL, with batch
norm in eval mode (running statistics, as `sample()` uses) and in train mode (batch
statistics of the 10,000 evaluation samples), the 10/50/90 % quantiles of the samples'
distance to the nearest mean, and (ALI) the encoder's mean sigma on held-out points.

    python -m tune.convergence --update alternating --steps 20000 --decay cosine --hold 0.5
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import torch

from ali_dist import losses, schedule
from ali_dist.data import toy
from ali_dist.evaluate.modes import mode_metrics
from ali_dist.models import VARIANTS, build, get_preset
from ali_dist.step import UPDATES, TrainStep, make_optimizers



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tune.convergence", description=__doc__.split(
        "\n\n")[0].split(": ", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    toy_preset = get_preset("toy")
    a = p.add_argument
    a("--variant", default="ali", choices=VARIANTS, help="[default: ali]")
    a("--steps", type=int, default=toy_preset.steps, help=f"[default: {toy_preset.steps}]")
    a("--batch-size", type=int, default=toy_preset.batch_size,
      help=f"[default: {toy_preset.batch_size}]")
    a("--lr", type=float, default=toy_preset.lr, help=f"Adam lr [default: {toy_preset.lr}]")
    a("--beta1", type=float, default=toy_preset.beta1, help=f"[default: {toy_preset.beta1}]")
    a("--init-std", type=float, default=toy_preset.init_std,
      help=f"[default: {toy_preset.init_std}]")
    a("--update", default="simultaneous", choices=UPDATES,
      help="simultaneous (the original code) or alternating D then E/G updates "
           "[default: simultaneous]")
    a("--decay", default="none", choices=schedule.DECAYS,
      help="learning-rate decay of both optimisers after --hold [default: none]")
    a("--final", type=float, default=0.01, help="lr at the end as a fraction of --lr "
                                                "[default: 0.01]")
    a("--hold", type=float, default=0.0, help="fraction of the steps at constant lr before "
                                              "the decay [default: 0]")
    a("--d-steps", type=int, default=1, help="discriminator updates per E/G update "
                                             "[default: 1]")
    a("--d-lr", type=float, default=1.0, help="the discriminator's lr as a multiple of --lr "
                                              "[default: 1]")
    a("--seed", type=int, default=0, help="[default: 0]")
    a("--eval-every", type=int, default=1000, help="[default: 1000]")
    a("--tag", default="", help="a label copied into every output line")
    a("--save", help="save the final state dict here")
    return p


@torch.no_grad()
def measure(model, held_out: torch.Tensor) -> dict:
    model.eval()
    ev = mode_metrics(model.decode, torch.Generator().manual_seed(1234), model.z_dim)
    train_bn = copy.deepcopy(model.decoder).train()   # batch statistics, running stats untouched
    tr = mode_metrics(train_bn, torch.Generator().manual_seed(1234), model.z_dim)
    x = model.decode(torch.randn(2500, model.z_dim, generator=torch.Generator().manual_seed(1)))
    d = torch.cdist(x, toy.means()).min(1).values
    keys = ("modes_paper", "modes_strict", "high_quality", "reverse_kl")
    out = {"eval_bn": [round(float(ev[k]), 3) for k in keys],
           "train_bn": [round(float(tr[k]), 3) for k in keys],
           "distance_q10_q50_q90": [round(float(v), 3)
                                    for v in d.quantile(torch.tensor([0.1, 0.5, 0.9]))]}
    if model.encoder is not None:
        out["encoder_sigma"] = round(float(model.encoder.moments(held_out)[1].exp().mean()), 4)
    model.train()
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model = build("toy", args.variant, args.init_std)
    opt = make_optimizers(model, args.lr, args.beta1, get_preset("toy").beta2)
    for g in opt.d.param_groups:
        g["lr"] = args.lr * args.d_lr
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: schedule.lr_factor(
        s, args.steps, args.decay, args.hold, args.final)) for o in (opt.d, opt.g)]
    step_fn = TrainStep(model, opt, torch.device("cpu"), "fp32", args.update)
    loader = toy.ToyLoader(toy.dataset(toy.TRAIN_SIZE, args.seed), args.batch_size,
                           seed=args.seed)
    held_out = loader.validation_batch(2000)
    batches, t0 = iter(loader), time.time()
    print("# eval_bn/train_bn: [modes_paper, modes_strict, high_quality, reverse_kl]",
          file=sys.stderr)
    for step in range(1, args.steps + 1):
        for _ in range(args.d_steps - 1):           # extra D-only updates on fresh batches
            x = next(batches)[0]
            model.train()
            opt.d.zero_grad(set_to_none=True)
            real, fake, _ = step_fn._logits(x, model.prior(len(x)), generator_grad=False)
            losses.discriminator_loss(real, fake).backward(inputs=step_fn.d_params)
            opt.d.step()
        step_fn(next(batches)[0])
        for s in schedules:
            s.step()
        if step % args.eval_every == 0 or step == args.steps:
            print(json.dumps({"tag": args.tag, "step": step, "seconds": round(time.time() - t0),
                              **measure(model, held_out)}), flush=True)
    if args.save:
        torch.save(model.state_dict(), args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
