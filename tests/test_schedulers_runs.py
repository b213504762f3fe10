"""Every listed scheduler on the embedded model, the `sdviz schedulers` command, and DPM++ SDE's noise seed."""

import math
import re
import warnings

import numpy as np
import pytest
import torch
from scheduler_oracle import sd_sigma

from sdviz import schedulers
from sdviz.cli import main

NAMES = schedulers.names()


@pytest.mark.parametrize("name", NAMES)
def test_runs_on_embedded_model_as_scheduled(name, embedded_pipe):
    """Each scheduler built from SD 1.5's config makes an image; the UNet sees exactly `schedule()`."""
    pipe = embedded_pipe
    pipe.scheduler = schedulers.make(name)
    seen_t, seen_c = [], []
    hook = pipe.unet.register_forward_pre_hook(
        lambda m, args, kwargs: seen_t.append(float((args[1] if len(args) > 1 else kwargs["timestep"]).flatten()[0])),
        with_kwargs=True,
    )
    original = pipe.scheduler.scale_model_input

    def scale(sample, *args, **kwargs):
        out = original(sample, *args, **kwargs)
        seen_c.append(float((out.double() / sample.double()).median()))
        return out

    pipe.scheduler.scale_model_input = scale
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the 8x8-latent model gains nothing from threads, and a busy CPU makes them stall
    try:
        image = pipe("a digit 3", num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    finally:
        torch.set_num_threads(threads)
        hook.remove()
        del pipe.scheduler.scale_model_input
    assert image.shape == (64, 64, 3) and np.isfinite(image).all() and image.std() > 0.01

    s = schedulers.schedule(name, 3)
    assert seen_t == s.timesteps.tolist()
    if float(pipe.scheduler.init_noise_sigma) != 1.0:  # sigma from the input scaling 1 / sqrt(sigma^2 + 1)
        measured = [math.sqrt(1 / c**2 - 1) for c in seen_c]
    else:  # the sample goes in unscaled: the scheduler's own sigma, else SD's sigma at t
        own = getattr(pipe.scheduler, "sigmas", None)
        measured = own[: len(seen_t)].tolist() if own is not None and len(own) == len(seen_t) + 1 else [sd_sigma(t) for t in seen_t]
        assert seen_c == [1.0] * len(seen_t)
    np.testing.assert_allclose(measured, s.sigmas.numpy(), rtol=1e-4)


# --- the command ---------------------------------------------------------------------------------------------


def test_cli_lists_and_describes(capsys):
    assert main(["schedulers"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out
    assert "dpm++2m_karras" in out and "stochastic" in out
    assert main(["schedulers", "dpm++2m_karras", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "alias settings: algorithm_type='dpmsolver++', solver_order=2, use_karras_sigmas=True" in out
    assert re.search(r"use_karras_sigmas\s+bool\s+False\s+False, True\s+space the sigmas", out)
    assert "14.6146" in out
    assert main(["schedulers", "eulr"]) == 2
    assert "did you mean 'euler'" in capsys.readouterr().err
    assert main(["schedulers", "--steps", "5"]) == 2
    assert "--steps needs a scheduler NAME" in capsys.readouterr().err



def test_cli_takes_list_and_describe_as_verbs(capsys):
    assert main(["schedulers"]) == 0
    listing = capsys.readouterr().out
    assert main(["schedulers", "list"]) == 0
    assert capsys.readouterr().out == listing
    assert main(["schedulers", "heun", "--steps", "3"]) == 0
    heun = capsys.readouterr().out
    assert main(["schedulers", "describe", "heun", "--steps", "3"]) == 0
    assert capsys.readouterr().out == heun and heun.startswith("HeunDiscreteScheduler: ")


def test_dpm_sde_run_repeats_only_with_a_noise_seed(embedded_pipe):
    pipe = embedded_pipe
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images = []
        for seed in (None, None, 5, 5):
            pipe.scheduler = schedulers.resolve("dpm++sde", pipe.scheduler.config, seed=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torchsde's interval warnings
                out = pipe("a digit 3", num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np")
            images.append(out.images[0])
    finally:
        torch.set_num_threads(threads)
    assert np.abs(images[0] - images[1]).max() > 1e-3  # the pipeline's generator alone does not fix its noise
    np.testing.assert_array_equal(images[2], images[3])
