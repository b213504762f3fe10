"""The schedulers that drive a Stable Diffusion 1.x UNet: names, describe, validate, make, resolve, schedule.

See `sdviz.schedulers.registry` for which diffusers schedulers are offered and why the others are not.
"""

from sdviz.schedulers.build import make, parse_spec, resolve, spec_key, use_scheduler
from sdviz.schedulers.checks import check_steps, max_steps, validate
from sdviz.schedulers.params import Param
from sdviz.schedulers.registry import SchedulerInfo, aliases, describe, lookup, names, sd15_config
from sdviz.schedulers.simulate import schedule, simulate
from sdviz.schedules import ForwardProcess, Schedule, forward_process

__all__ = [
    "ForwardProcess", "Param", "Schedule", "SchedulerInfo", "aliases", "check_steps", "describe", "forward_process", "lookup", "make",
    "max_steps", "names", "parse_spec", "resolve", "schedule", "sd15_config", "simulate", "spec_key", "use_scheduler", "validate",
]
