import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

import sdviz
from sdviz.train.autoencoder import AutoencoderConfig, KLLoss, train_autoencoder
from sdviz.train.diffusion import DiffusionConfig, encode_latents, latent_std, make_pipeline, train_diffusion
from sdviz.train.export import export_pipeline
from sdviz.train.text_encoder import TextEncoderConfig

pytestmark = pytest.mark.slow  # training runs, if tiny ones


def _vae():
    torch.manual_seed(0)
    return AutoencoderKL(
        sample_size=64, block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=4, latent_channels=4,
    )  # fmt: skip


def _unet_and_text():
    torch.manual_seed(0)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))  # fmt: skip
    unet = UNet2DConditionModel(
        sample_size=8, block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1, norm_num_groups=4,
        cross_attention_dim=16, attention_head_dim=4,
    )  # fmt: skip
    return unet, text


AE = AutoencoderConfig(steps=4, batch_size=2, data_size=8, warmup=1, sample_every=4, checkpoint_every=2, log_every=1)
DIFF = DiffusionConfig(steps=4, batch_size=4, data_size=8, warmup=1, sample_every=4, sample_steps=2,
                       checkpoint_every=2, log_every=1)  # fmt: skip


def test_autoencoder_run_writes_its_folder_and_resumes_exactly(tmp_path):
    whole = train_autoencoder(_vae(), KLLoss(), tmp_path / "a", AE, progress=False)
    for name in ("losses.csv", "losses.png", "samples/recon-000004.png", "checkpoint/weights.safetensors", "model/config.json"):
        assert (tmp_path / "a" / name).is_file(), name
    state = json.loads((tmp_path / "a" / "checkpoint" / "state.json").read_text())["state"]
    assert state["step"] == 4 and len(state["losses"]) == 4
    assert all(np.isfinite(r["loss"]) for r in state["losses"])

    train_autoencoder(_vae(), KLLoss(), tmp_path / "b", AE, progress=False, until=2)  # "interrupted"
    resumed = train_autoencoder(_vae(), KLLoss(), tmp_path / "b", AE, progress=False)
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert torch.any(a["decoder.conv_out.weight"] != _vae().state_dict()["decoder.conv_out.weight"])


def test_a_checkpoint_resumes_only_under_the_settings_it_was_written_with(tmp_path):
    train_autoencoder(_vae(), KLLoss(), tmp_path, AE, progress=False, until=2)
    with pytest.raises(ValueError, match=r"lr: 0.001 -> 0.002.*another folder"):
        train_autoencoder(_vae(), KLLoss(), tmp_path, replace(AE, lr=2e-3), progress=False)
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == AE.lr  # the refused run wrote nothing
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())["state"]
    assert state["step"] == 2
    train_autoencoder(_vae(), KLLoss(), tmp_path, replace(AE, log_every=2, threads=2), progress=False)  # cadences may change
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["state"]["step"] == AE.steps


def test_the_latent_cache_refuses_other_glyphs(tmp_path):
    vae, path = _vae().eval(), tmp_path / "latents.safetensors"
    first = encode_latents(vae, sdviz.train.data.GlyphDataset(4), path, progress=False)
    again = encode_latents(vae, sdviz.train.data.GlyphDataset(4), path, progress=False)
    torch.testing.assert_close(first["mean"], again["mean"], rtol=0, atol=0)
    with pytest.raises(ValueError, match="other glyphs.*delete it"):
        encode_latents(vae, sdviz.train.data.GlyphDataset(4, shade=0.3), path, progress=False)


def test_diffusion_run_resumes_and_exports_a_loadable_model(tmp_path, capfd):
    vae = _vae().eval()
    cache = encode_latents(vae, sdviz.train.data.GlyphDataset(8), tmp_path / "latents.safetensors", progress=False)
    assert cache["mean"].shape == (8, 4, 8, 8) and cache["prompt"].min() >= 1
    vae.register_to_config(scaling_factor=1 / latent_std(cache))
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "latents.safetensors").write_bytes((tmp_path / "latents.safetensors").read_bytes())
    unet, text = _unet_and_text()
    whole = train_diffusion(unet, text, vae, tmp_path / "a", DIFF, progress=False)
    assert (tmp_path / "a" / "samples" / "step-000004.png").is_file()
    train_diffusion(*_unet_and_text(), vae, tmp_path / "b", DIFF, progress=False, until=2)
    unet_b, text_b = _unet_and_text()
    resumed = train_diffusion(unet_b, text_b, vae, tmp_path / "b", DIFF, progress=False)
    for (k, x), (_, y) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=k)
    torch.testing.assert_close(unet.state_dict()["conv_out.weight"], unet_b.state_dict()["conv_out.weight"], rtol=0, atol=0)
    train_diffusion(*_unet_and_text(), vae, tmp_path / "new" / "run", DIFF, progress=False, until=1)  # a fresh folder
    assert (tmp_path / "new" / "run" / "latents.safetensors").is_file()

    capfd.readouterr()
    folder = export_pipeline(make_pipeline(vae, text, whole), tmp_path / "model")
    assert "it/s]" not in capfd.readouterr().err  # no library progress bar (transformers draws one on saving)
    pipe = sdviz.load_pipeline(folder, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae.config.scaling_factor == pytest.approx(vae.config.scaling_factor)
    image = pipe("a red letter A on a blue background", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (64, 64)


def test_decoder_refinement_keeps_the_latents(tmp_path):
    from sdviz.train.autoencoder import DecoderLoss

    vae = _vae()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    cfg = AutoencoderConfig(steps=2, batch_size=2, data_size=4, warmup=1, sample_every=2, checkpoint_every=2)
    train_autoencoder(vae, DecoderLoss(), tmp_path, cfg, progress=False)
    after = vae.state_dict()
    for k in before:
        same = torch.equal(before[k], after[k])
        assert same if k.startswith(("encoder.", "quant_conv.")) else True, k
    assert not torch.equal(before["decoder.conv_out.weight"], after["decoder.conv_out.weight"])


def test_embedded_recipe_runs_end_to_end_and_exports_the_package_layout(tmp_path):
    from sdviz.train.embedded import train_embedded

    tiny_ae = AutoencoderConfig(steps=2, batch_size=2, data_size=4, warmup=1, sample_every=2, checkpoint_every=2, threads=1)
    tiny_unet = DiffusionConfig(steps=2, batch_size=4, data_size=6, warmup=1, sample_every=2, sample_steps=2,
                                checkpoint_every=2, threads=1, shade=0.3)  # fmt: skip
    tiny_text = TextEncoderConfig(steps=2, batch_size=4, warmup=1, checkpoint_every=2, threads=1)
    soft = replace(tiny_unet, steps=3, spread=(0.0, 0.5), caption_noise=(0.3, 0.3, 0.15))
    run = dict(autoencoder=tiny_ae, text=tiny_text, diffusion=tiny_unet, soft_background=soft, decoder=tiny_ae,
               progress=False)  # fmt: skip
    train_embedded(tmp_path / "run", tmp_path / "model", **run)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    stages = ("autoencoder", "text_encoder", "diffusion", "soft_background", "decoder")
    assert [summary[f"{s}_final"]["step"] for s in stages] == [2, 2, 2, 3, 2]
    config = json.loads((tmp_path / "run" / "diffusion" / "config.json").read_text())
    assert config["train_text_encoder"] is False and config["shade"] == 0.3  # the UNet trains under a frozen encoder
    soft_config = json.loads((tmp_path / "run" / "soft_background" / "config.json").read_text())
    assert soft_config["spread"] == [0.0, 0.5] and soft_config["caption_noise"] == [0.3, 0.3, 0.15]
    pipe = sdviz.load_pipeline(tmp_path / "model", device="cpu")
    embedded = sdviz.load_pipeline(device="cpu")
    for name in ("unet", "vae", "text_encoder"):  # the recipe builds exactly the shipped architecture
        ours, shipped = getattr(pipe, name).state_dict(), getattr(embedded, name).state_dict()
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in shipped.items()}, name
    assert pipe.vae.config.scaling_factor == pytest.approx(summary["scaling_factor"])
    # a second call over the finished run trains nothing and exports the same weights
    train_embedded(tmp_path / "run", tmp_path / "again", **run)
    for f in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        assert (tmp_path / "model" / f).read_bytes() == (tmp_path / "again" / f).read_bytes(), f


def test_min_snr_weights_cap_the_clean_end_and_leave_the_noisy_end():
    from diffusers import DDPMScheduler

    from sdviz.train.architecture import SCHEDULER_CONFIG
    from sdviz.train.diffusion import snr_weights

    ac = DDPMScheduler.from_config(SCHEDULER_CONFIG).alphas_cumprod
    w = snr_weights(ac, 5.0)
    snr = ac / (1 - ac)
    assert w[0] == pytest.approx(5.0 / snr[0].item()) and w[0] < 0.01  # t=0: SNR ~ 1,170
    assert torch.all(w[snr <= 5.0] == 1.0) and torch.all(w <= 1.0)
    assert torch.equal(snr_weights(ac, None), torch.ones_like(ac))
