"""Our from-scratch modules against diffusers/transformers on the same weights (minGPT's import test)."""

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
from transformers import CLIPTextConfig, CLIPTextModel

from sdviz.models import VAE, TextEncoder, UNet
from sdviz.models.convert import TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX, key_table, to_original_checkpoint

TOL = 1e-4



def sd15_shaped_unet(seed=0):
    """SD 1.5's UNet layout (4 levels, 2 layers per block, attention at the first three) with few channels."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=16, block_out_channels=(32, 64, 64, 64), layers_per_block=2, attention_head_dim=8,
        cross_attention_dim=32, norm_num_groups=32,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    ).eval()


def sd15_shaped_vae(seed=0):
    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(32, 64, 64, 64), layers_per_block=2, norm_num_groups=32, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=32,
    ).eval()


def sd15_shaped_text_encoder(seed=0):
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, hidden_act="quick_gelu", eos_token_id=2,
    )
    return CLIPTextModel(config).eval()


def _unet_parity(ref, shape, context_dim):
    ours = UNet.from_diffusers(ref)
    torch.manual_seed(1)
    x, ctx = torch.randn(shape), torch.randn(shape[0], 77, context_dim)
    with torch.no_grad():
        for t in (1, 500, 999):
            want = ref(x, t, encoder_hidden_states=ctx).sample
            got = ours(x, torch.tensor(t), ctx)
            assert got.shape == want.shape
            assert (got - want).abs().max() <= TOL, t
            assert want.abs().mean() > 1e-2  # a real signal, not two zeros agreeing


def test_unet_parity_embedded(embedded_pipe):
    cfg = embedded_pipe.unet.config
    _unet_parity(embedded_pipe.unet, (2, cfg.in_channels, 8, 8), cfg.cross_attention_dim)


def test_unet_parity_sd15_shaped():
    # 12x20 does not halve evenly three times: the up path must follow the skips' sizes
    _unet_parity(sd15_shaped_unet(), (1, 4, 12, 20), 32)


def _vae_parity(ref, size):
    ours = VAE.from_diffusers(ref)
    assert ours.scaling_factor == ref.config.scaling_factor
    torch.manual_seed(1)
    img = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        want, got = ref.encode(img).latent_dist, ours.encode(img)
        assert (got.mean - want.mean).abs().max() <= TOL
        assert (got.std - want.std).abs().max() <= TOL
        # the reparameterisation trick draws the same noise from the same generator
        zw = want.sample(torch.Generator().manual_seed(3))
        zg = got.sample(torch.Generator().manual_seed(3))
        assert (zg - zw).abs().max() <= TOL and not torch.equal(zg, got.mean)
        dec_want, dec_got = ref.decode(zw).sample, ours.decode(zw)
        assert dec_got.shape == img.shape
        assert (dec_got - dec_want).abs().max() <= TOL


def test_vae_parity_embedded(embedded_pipe):
    _vae_parity(embedded_pipe.vae, 64)


def test_vae_parity_sd15_shaped():
    _vae_parity(sd15_shaped_vae(), 32)


def _text_parity(ref, ids):
    ours = TextEncoder.from_diffusers(ref)
    with torch.no_grad():
        want = ref(ids, output_hidden_states=True)
        got = ours(ids, output_hidden_states=True)
        assert (got.last_hidden_state - want.last_hidden_state).abs().max() <= TOL
        assert (got.pooled - want.pooler_output).abs().max() <= TOL
        assert len(got.hidden_states) == len(want.hidden_states) == ref.config.num_hidden_layers + 1
        for a, b in zip(got.hidden_states, want.hidden_states, strict=True):
            assert (a - b).abs().max() <= TOL
        mask = torch.ones_like(ids)
        mask[:, 6:] = 0
        want = ref(ids, attention_mask=mask).last_hidden_state
        assert (ours(ids, mask).last_hidden_state - want).abs().max() <= TOL


def test_text_encoder_parity_embedded(embedded_pipe):
    ids = embedded_pipe.tokenizer(["a cat", "a red letter A on a blue background"], padding="max_length",
                                  max_length=77, return_tensors="pt").input_ids
    _text_parity(embedded_pipe.text_encoder, ids)


def test_text_encoder_parity_sd15_shaped():
    ids = torch.randint(3, 900, (2, 77))
    ids[:, 0], ids[0, 9:], ids[1, 30:] = 1, 999, 999  # the end token has the largest id, as in CLIP
    _text_parity(sd15_shaped_text_encoder(), ids)


def test_causal_mask_hides_later_tokens():
    enc = TextEncoder.from_diffusers(sd15_shaped_text_encoder())
    a = torch.randint(3, 900, (1, 12))
    b = a.clone()
    b[0, 8:] = torch.randint(3, 900, (4,))
    with torch.no_grad():
        ha, hb = enc(a).last_hidden_state, enc(b).last_hidden_state
    assert torch.allclose(ha[:, :8], hb[:, :8], atol=1e-6)
    assert not torch.allclose(ha[:, 8:], hb[:, 8:], atol=1e-3)


def test_original_layout_matches_diffusers_own_converter():
    """Our original-SD names for an SD 1.5-shaped UNet and VAE, read back by diffusers' single-file converter."""
    unet, vae = sd15_shaped_unet(), sd15_shaped_vae()

    class Pipe:  # the three components to_original_checkpoint reads
        text_encoder = sd15_shaped_text_encoder()

    Pipe.unet, Pipe.vae = unet, vae
    ckpt = to_original_checkpoint(Pipe)
    assert ckpt[VAE_PREFIX + "encoder.mid.attn_1.q.weight"].shape == (64, 64, 1, 1)  # 1x1 convs, as the original
    assert TEXT_PREFIX + "final_layer_norm.weight" in ckpt
    back = convert_ldm_unet_checkpoint({k: v for k, v in ckpt.items() if k.startswith(UNET_PREFIX)}, dict(unet.config))
    assert set(back) == set(unet.state_dict())
    assert all(torch.equal(back[k], v) for k, v in unet.state_dict().items())
    back = convert_ldm_vae_checkpoint({k: v for k, v in ckpt.items() if k.startswith(VAE_PREFIX)}, dict(vae.config))
    assert set(back) == set(vae.state_dict())
    assert all(torch.equal(back[k].reshape(v.shape), v) for k, v in vae.state_dict().items())


def test_key_table_is_one_to_one(embedded_pipe):
    for module in (UNet.from_diffusers(sd15_shaped_unet()), VAE.from_diffusers(embedded_pipe.vae)):
        table = key_table(module)
        assert len({d for d, _ in table.values()}) == len({o for _, o in table.values()}) == len(table)
    # the flat original numbering follows the config: 3 levels x (1 + 1) output blocks, SD 1.5 has 4 x 3
    embedded = {o for _, o in key_table(UNet.from_diffusers(embedded_pipe.unet)).values()}
    assert UNET_PREFIX + "output_blocks.5.1.proj_out.weight" in embedded
    assert not any(o.startswith(UNET_PREFIX + "output_blocks.6.") for o in embedded)
    sd15 = {o for _, o in key_table(UNet.from_diffusers(sd15_shaped_unet())).values()}
    assert UNET_PREFIX + "output_blocks.11.0.skip_connection.weight" in sd15
