"""Round trips through the original single-file SD layout, and the converters' errors."""

import tempfile

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import sdviz
from sdviz.checkpoints import checkpoint_config, embedded_path
from sdviz.models import VAE, TextEncoder, UNet, load_original_checkpoint, save_original_checkpoint
from sdviz.models.convert import TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX, load_state


@pytest.fixture(scope="module")
def original_file(embedded_pipe_session, tmp_path_factory):
    return save_original_checkpoint(embedded_pipe_session, tmp_path_factory.mktemp("ckpt") / "embedded.safetensors")


def _image(pipe, seed=0, steps=4):
    g = torch.Generator().manual_seed(seed)
    return pipe("a red letter A on a blue background", num_inference_steps=steps, generator=g, output_type="np").images[0]


def test_original_file_has_the_sd_layout(original_file):
    keys = set(load_file(original_file))
    assert UNET_PREFIX + "input_blocks.0.0.weight" in keys
    assert UNET_PREFIX + "middle_block.1.transformer_blocks.0.attn2.to_k.weight" in keys
    assert VAE_PREFIX + "decoder.up.0.block.0.conv1.weight" in keys
    assert TEXT_PREFIX + "embeddings.token_embedding.weight" in keys
    assert all(k.startswith((UNET_PREFIX, VAE_PREFIX, TEXT_PREFIX)) for k in keys)


def test_round_trip_through_our_modules(embedded_pipe, original_file):
    unet, vae, text = load_original_checkpoint(original_file, checkpoint_config(original_file))
    assert isinstance(unet, UNet) and isinstance(vae, VAE) and isinstance(text, TextEncoder)
    ours = sdviz.swap(embedded_pipe, unet=unet, vae=vae, text_encoder=text)
    want, got = _image(embedded_pipe), _image(ours)
    assert want.std() > 0.01
    assert np.abs(got - want).max() <= 1e-3


def test_round_trip_through_diffusers_single_file(embedded_pipe, original_file):
    pipe = sdviz.load_pipeline(original_file, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.unet.config.block_out_channels == embedded_pipe.unet.config.block_out_channels
    assert np.abs(_image(pipe) - _image(embedded_pipe)).max() <= 1e-3


def test_ckpt_is_read_weights_only(embedded_pipe, original_file, tmp_path):
    ckpt = tmp_path / "embedded.ckpt"
    torch.save({"state_dict": {**load_file(original_file), "betas": torch.zeros(1000)}}, ckpt)
    unet, _, _ = load_original_checkpoint(ckpt, checkpoint_config(ckpt))  # keys outside the three models are not read
    want = embedded_pipe.unet.state_dict()["conv_in.weight"]
    assert torch.equal(unet.conv_in.weight, want)


def _write(state, path):
    save_file(state, str(path))
    return path


def test_missing_key_names_itself(original_file, tmp_path):
    state = load_file(original_file)
    gone = UNET_PREFIX + "output_blocks.1.1.conv.weight"  # the first upsampler
    del state[gone]
    with pytest.raises(ValueError, match=rf"1 missing key\(s\): {gone}"):
        load_original_checkpoint(_write(state, tmp_path / "m.safetensors"), embedded_path())


def test_extra_key_names_itself(original_file, tmp_path):
    state = load_file(original_file)
    state[VAE_PREFIX + "encoder.down.9.block.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"1 unexpected key\(s\): first_stage_model\.encoder\.down\.9\.block\.0\.conv1"):
        load_original_checkpoint(_write(state, tmp_path / "x.safetensors"), embedded_path())


def test_wrong_shape_names_itself(original_file, tmp_path):
    state = load_file(original_file)
    key = TEXT_PREFIX + "final_layer_norm.weight"
    state[key] = torch.zeros(65)
    with pytest.raises(ValueError, match=r"final_layer_norm\.weight has shape \(65,\), TextEncoder expects \(64,\)"):
        load_original_checkpoint(_write(state, tmp_path / "s.safetensors"), embedded_path())


def test_diffusers_state_errors_name_the_key(embedded_pipe):
    unet = UNet.from_diffusers(embedded_pipe.unet)
    names = {k: k for k in unet.state_dict()}
    state = dict(unet.state_dict())
    state.pop("conv_in.bias")
    with pytest.raises(ValueError, match=r"missing key\(s\): conv_in\.bias"):
        load_state(unet, state, names, "test")
    state["conv_in.bias"], state["lora.weight"] = torch.zeros(32), torch.zeros(1)
    with pytest.raises(ValueError, match=r"unexpected key\(s\): lora\.weight"):
        load_state(unet, state, names, "test")


def test_config_that_does_not_fit_is_named(original_file, tmp_path):
    import json
    import shutil

    folder = shutil.copytree(embedded_path(), tmp_path / "cfg", ignore=shutil.ignore_patterns("*.safetensors"))
    cfg = json.loads((folder / "unet" / "config.json").read_text())
    (folder / "unet" / "config.json").write_text(json.dumps({**cfg, "layers_per_block": 2}))
    with pytest.raises(ValueError, match=r"missing key\(s\): model\.diffusion_model\.input_blocks\.2\.0\.emb_layers"):
        load_original_checkpoint(original_file, config=folder)


@pytest.fixture()
def temp_dir(tmp_path, monkeypatch):
    """Point the temp dir (TMPDIR and tempfile's cache of it) at an empty test folder."""
    sdviz.load_tokenizer()  # its vocabulary folder is a cache in the temp dir, built once and kept on purpose
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _ckpt(state, path):
    torch.save({"state_dict": state}, path)
    return path


def test_a_ckpt_load_leaves_nothing_in_the_temp_dir(original_file, tmp_path, temp_dir):
    pipe = sdviz.load_pipeline(_ckpt(load_file(original_file), tmp_path / "e.ckpt"), device="cpu")
    assert pipe.unet is not None and list(temp_dir.iterdir()) == []  # the safetensors copy is gone


@pytest.mark.parametrize("damage", ["not SD", "wrong shape"])
def test_a_failed_ckpt_load_leaves_nothing_in_the_temp_dir(original_file, tmp_path, temp_dir, damage):
    state = load_file(original_file)
    if damage == "not SD":
        state = {k.replace(UNET_PREFIX, "unet."): v for k, v in state.items()}
    else:
        state[UNET_PREFIX + "out.2.weight"] = torch.zeros(3, 3)
    with pytest.raises((ValueError, RuntimeError)):
        sdviz.load_pipeline(_ckpt(state, tmp_path / "bad.ckpt"), device="cpu")
    assert list(temp_dir.iterdir()) == []
