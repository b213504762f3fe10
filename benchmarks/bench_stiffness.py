"""How stiff is a model's guided sampling ODE? The most negative gain of its guided denoiser along Euler runs.

Along a 25-step Euler run (guidance 7.5, held-out prompts), at each step the guided denoiser
D(x) = D_u + g (D_c - D_u) is linearised around x_t, and power iteration on its Jacobian (finite differences,
`--iters` products) finds the gain of largest magnitude, an eigenvalue of dD/dx. A gain below 0 means the
prediction moves *against* its input. The probability-flow ODE dx/dsigma = (x - D) / sigma (Karras et al. 2022,
eq. 3) then has the eigenvalue lambda = (1 - gain) / sigma, and a step from sigma to sigma' puts
z = (sigma' - sigma) lambda on the solver's stability region: Euler is stable for z in [-2, 0], 2nd-order
Adams-Bashforth for [-1, 0], 4th-order (LMS, PNDM's PLMS) only for about [-0.3, 0]. Prints, per step, the median
over prompts of the gain and of z, and the share of prompts whose z leaves each interval. A few seconds per
prompt: a screen for recipes before a long evaluation.

Run: python benchmarks/bench_stiffness.py [--model DIR] [--prompts 8] [--iters 8] [--threads 2]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import sdviz
from sdviz.schedulers import make
from sdviz.train.data import caption
from sdviz.train.evaluation import EVAL_SEED, eval_prompts

INTERVALS = {"Euler": -2.0, "AB2": -1.0, "AB4": -0.3}


@torch.no_grad()
def guided_x0(pipe, x: torch.Tensor, sigma: float, t: torch.Tensor, emb: torch.Tensor, g: float) -> torch.Tensor:
    """Return the guided prediction of the clean latents at noise level `sigma` (Euler's sigma scale)."""
    inp = torch.cat([x, x]) / (sigma**2 + 1) ** 0.5
    eps_u, eps_c = pipe.unet(inp, t, encoder_hidden_states=emb).sample.chunk(2)
    return x - sigma * (eps_u + g * (eps_c - eps_u))


def dominant_gain(f, x: torch.Tensor, iters: int, eps: float, gen: torch.Generator) -> float:
    """Return the Rayleigh quotient of the Jacobian of `f` at `x` after `iters` power iterations."""
    v = torch.randn(x.shape, generator=gen)
    v /= v.norm()
    gain = 0.0
    for _ in range(iters):
        jv = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
        gain = float((v * jv).sum())
        v = jv / jv.norm().clamp_min(1e-12)
    return gain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a diffusers folder (default: the embedded model)")
    ap.add_argument("--prompts", type=int, default=8, help="held-out prompts")
    ap.add_argument("--steps", type=int, default=25, help="Euler steps")
    ap.add_argument("--guidance-scale", type=float, default=7.5)
    ap.add_argument("--iters", type=int, default=8, help="power iterations per step")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = sdviz.load_pipeline(args.model, device="cpu")
    sched = make("euler", pipe.scheduler.config)
    sched.set_timesteps(args.steps)
    sigmas, timesteps = sched.sigmas.tolist(), sched.timesteps
    gains = np.zeros((args.prompts, args.steps))
    for k, prompt in enumerate(eval_prompts(args.prompts)):
        gen = torch.Generator().manual_seed(EVAL_SEED + 1000 * k)
        emb = torch.cat(pipe.encode_prompt(caption(*prompt), "cpu", 1, True)[::-1])  # (uncond, text)
        x = torch.randn((1, 4, 8, 8), generator=gen) * sigmas[0]
        for i in range(args.steps):
            s, t = sigmas[i], timesteps[i]

            def f(z, s=s, t=t, emb=emb):
                return guided_x0(pipe, z, s, t, emb, args.guidance_scale)

            gains[k, i] = dominant_gain(f, x, args.iters, 1e-2 * max(s, 0.1), gen)
            x0 = f(x)
            x = x0 + sigmas[i + 1] / s * (x - x0)  # an Euler step
    steps = np.array(sigmas[:-1])
    z = (np.array(sigmas[1:]) - steps) / steps * (1 - gains)  # (prompts, steps)
    print(f"{args.prompts} prompts, Euler {args.steps} steps, guidance {args.guidance_scale}, {args.iters} power iterations")
    print("| step | sigma | gain, median (min) | z, median (min) | " + " | ".join(f"z < {v} ({n})" for n, v in INTERVALS.items()) + " |")
    print("|---|---|---|---|" + "---|" * len(INTERVALS))
    for i in range(args.steps):
        out = " | ".join(f"{(z[:, i] < v).mean():.0%}" for v in INTERVALS.values())
        print(f"| {i} | {steps[i]:.3f} | {np.median(gains[:, i]):+.2f} ({gains[:, i].min():+.2f}) | "
              f"{np.median(z[:, i]):+.2f} ({z[:, i].min():+.2f}) | {out} |")  # fmt: skip
    worst = z.min(1)
    print(f"\nper prompt, the run's most negative z: median {np.median(worst):+.2f}, "
          + ", ".join(f"{(worst < v).mean():.0%} leave {n}'s interval" for n, v in INTERVALS.items()))


if __name__ == "__main__":
    main()
