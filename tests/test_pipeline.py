import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import sdviz
from sdviz.pipeline import default_dtype, embedded_path
from sdviz.train.architecture import UNET_CONFIG


def _image(pipe, seed=0, steps=4):
    g = torch.Generator().manual_seed(seed)
    return np.asarray(pipe("a red letter A on a blue background", num_inference_steps=steps, generator=g).images[0])


def test_embedded_model_generates_64px(embedded_pipe):
    assert embedded_pipe.name_or_path == "sdviz/embedded"
    assert embedded_pipe.vae_scale_factor == 8
    assert embedded_pipe.unet.dtype == torch.float32 and embedded_pipe.device.type == "cpu"
    assert embedded_pipe.safety_checker is None
    img = _image(embedded_pipe)
    assert img.shape == (64, 64, 3)


def test_default_dtype_keeps_the_embedded_model_in_float32():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert default_dtype(None, cuda) == torch.float32  # float16 cost it 5 points on a GPU
    assert default_dtype("runwayml/stable-diffusion-v1-5", cuda) == torch.float16
    assert default_dtype("some/folder", cpu) == torch.float32 and default_dtype(None, cpu) == torch.float32


def test_embedded_folder_is_small_and_standard():
    folder = embedded_path()
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size <= 20 * 2**20
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (folder / sub).is_dir()
    assert (folder / "model_index.json").is_file()


def test_embedded_layout_is_sd1(embedded_pipe):
    unet, vae, text = embedded_pipe.unet, embedded_pipe.vae, embedded_pipe.text_encoder
    assert "CrossAttnUpBlock2D" in unet.config.up_block_types  # the UNet reads the prompt by cross-attention
    for key, value in UNET_CONFIG.items():  # the shipped weights are the recipe's layout
        got = unet.config[key]
        assert (tuple(got) if isinstance(got, list) else got) == value, key
    assert len(vae.config.block_out_channels) == 4  # three down-samplings: scale factor 8
    assert text.config.vocab_size == 49408
    sched = embedded_pipe.scheduler.config
    assert (sched.beta_schedule, sched.beta_start, sched.beta_end) == ("scaled_linear", 0.00085, 0.012)
    assert (sched.num_train_timesteps, sched.steps_offset) == (1000, 1)
    assert embedded_pipe.tokenizer.model_max_length == 77


def test_save_pretrained_round_trip(tiny_pipe, tmp_path):
    before = _image(tiny_pipe)
    tiny_pipe.save_pretrained(tmp_path / "m")
    loaded = sdviz.load_pipeline(tmp_path / "m", device="cpu")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.name_or_path == str(tmp_path / "m")
    np.testing.assert_array_equal(_image(loaded), before)


def test_missing_path_names_the_options(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder.*embedded model"):
        sdviz.load_pipeline(tmp_path / "nothing-here")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        sdviz.load_pipeline("./relative/missing.safetensors")


def test_folder_without_model_index(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(ValueError, match="no model_index.json.*save_pretrained"):
        sdviz.load_pipeline(tmp_path)


def test_hub_id_offline_says_how_to_pass_a_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(OSError, match=r"offline.*pass the local folder: sdviz.load_pipeline\('my-model'\)"):
        sdviz.load_pipeline("nobody-here/no-such-model")


def test_file_of_the_wrong_kind(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match=r"\.bin file.*\.safetensors or \.ckpt"):
        sdviz.load_pipeline(f)
    img = tmp_path / "cat.png"
    Image.new("RGB", (4, 4)).save(img)
    with pytest.raises(ValueError, match=r"\.png file"):
        sdviz.load_pipeline(img)


def test_safetensors_that_is_not_sd(tmp_path):
    f = tmp_path / "lora.safetensors"
    save_file({"lora_up.weight": torch.zeros(2, 2)}, f)
    with pytest.raises(ValueError, match="not an original-layout Stable Diffusion checkpoint"):
        sdviz.load_pipeline(f)
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not safetensors at all")
    with pytest.raises(ValueError, match="not a readable .safetensors file"):
        sdviz.load_pipeline(bad)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_ckpt_with_pickled_code_is_refused(tmp_path, capsys):
    f = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": _Evil()}}, f)
    with pytest.raises(ValueError, match="weights-only checkpoint.*never unpickles"):
        sdviz.load_pipeline(f)
    assert "this must never run" not in capsys.readouterr().out


def test_ckpt_weights_only_that_is_not_sd(tmp_path):
    f = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, f)
    with pytest.raises(ValueError, match="not an original-layout"):
        sdviz.load_pipeline(f)
