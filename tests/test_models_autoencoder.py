"""Our plain autoencoder and VAE train with the shared autoencoder loop."""

import csv

import pytest
import torch

from sdviz.models.autoencoder import Autoencoder
from sdviz.models.losses import AELoss, VAELoss
from sdviz.models.vae import VAE, VAEConfig
from sdviz.train.autoencoder import AutoencoderConfig, train_autoencoder

CFG = VAEConfig(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=4, sample_size=64)
RUN = AutoencoderConfig(steps=12, batch_size=4, data_size=4, warmup=2, lr=3e-3, sample_every=12, checkpoint_every=12,
                        log_every=2)



@pytest.mark.parametrize(("make", "loss", "columns"), [(VAE, VAELoss(), {"l1", "kl"}), (Autoencoder, AELoss(), {"l1"})])
def test_trains_with_the_shared_loop(tmp_path, make, loss, columns):
    torch.manual_seed(0)
    model = train_autoencoder(make(CFG), loss, tmp_path, RUN, progress=False)
    rows = list(csv.DictReader((tmp_path / "losses.csv").open()))
    assert len(rows) == 6 and columns | {"step", "loss"} == set(rows[0])
    assert float(rows[-1]["loss"]) < 0.9 * float(rows[0]["loss"])
    assert (tmp_path / "losses.png").stat().st_size > 0
    assert (tmp_path / "model" / "model.safetensors").is_file() and not model.training


def test_vae_loss_reaches_the_variance_through_the_sample():
    torch.manual_seed(0)
    vae = VAE(CFG)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    value, parts = VAELoss(kl_weight=0.0)(vae, x, torch.Generator().manual_seed(0))
    value.backward()
    grad = vae.quant_conv.weight.grad  # rows 4..7 produce the log-variance
    assert grad[4:].abs().sum() > 0 and parts["kl"] > 0
    z = Autoencoder(CFG).encode(x)
    assert z.shape == (2, 4, 4, 4)
