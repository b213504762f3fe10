"""matplotlib plots of a Trace, a Schedule, a ForwardProcess or evaluation results: each `plot_x(data, *, ax=None, **kwargs)`
returns its artists; multi-panel plots take `axes=None, fig=None`. None calls `show()` or touches rcParams."""

from sdviz.plot.attention import plot_prompt_attention, plot_word_attention, save_word_maps
from sdviz.plot.common import bare
from sdviz.plot.compare import plot_compare_grid, plot_latent_norms
from sdviz.plot.embedding import plot_timestep_embedding
from sdviz.plot.forward import plot_forward_process
from sdviz.plot.guidance import plot_guidance_maps, plot_guidance_norms
from sdviz.plot.latents import (
    kept_steps,
    latent_image,
    plot_latent_channels,
    plot_step_strip,
    step_tensor,
    xt_tensor,
)
from sdviz.plot.overlay import overlay_image, plot_overlay
from sdviz.plot.quality import plot_quality
from sdviz.plot.schedules import plot_alphas_cumprod, plot_sigmas, plot_snr, plot_timesteps
from sdviz.plot.tokens import plot_tokens, plot_unique_tokens

__all__ = [
    "bare", "kept_steps", "latent_image", "overlay_image", "save_word_maps", "step_tensor", "xt_tensor",
    "plot_alphas_cumprod", "plot_compare_grid", "plot_forward_process", "plot_guidance_maps", "plot_guidance_norms",
    "plot_latent_channels", "plot_latent_norms", "plot_overlay", "plot_prompt_attention", "plot_quality",
    "plot_sigmas", "plot_snr", "plot_step_strip", "plot_timestep_embedding", "plot_timesteps", "plot_tokens",
    "plot_unique_tokens", "plot_word_attention",
]
