"""load_pipeline picks the class from model_index.json, refuses families sdviz does not capture, and loads a
single-file SD 2.x checkpoint given a local config."""

import json
import shutil

import numpy as np
import pytest
import torch
from families import PROMPT, build_inpaint, build_refiner, build_sd2, build_sdxl, sd2_original_checkpoint
from safetensors.torch import save_file

import sdviz
from sdviz.pipeline import SUPPORTED, pipeline_class


def _image(pipe, **kw):
    g = torch.Generator().manual_seed(0)
    return pipe(PROMPT, num_inference_steps=2, generator=g, output_type="np", **kw).images[0]


@pytest.mark.parametrize(("builder", "cls"), [
    (build_sdxl, "StableDiffusionXLPipeline"), (build_refiner, "StableDiffusionXLImg2ImgPipeline"),
    (build_sd2, "StableDiffusionPipeline"), (build_inpaint, "StableDiffusionInpaintPipeline"),
])  # fmt: skip
def test_folder_loads_as_its_own_class(builder, cls, tmp_path):
    pipe = builder()
    pipe.save_pretrained(tmp_path / "m")
    loaded = sdviz.load_pipeline(tmp_path / "m", device="cpu")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded).__name__ == cls and loaded.name_or_path == str(tmp_path / "m")
    kw = {}
    if "Inpaint" in cls or "Img2Img" in cls:
        kw = {"image": torch.zeros(1, 3, 32, 32), "strength": 1.0}
        kw |= {"mask_image": torch.ones(1, 1, 32, 32)} if "Inpaint" in cls else {}
    np.testing.assert_array_equal(_image(loaded, **kw), _image(pipe, **kw))
    if "XL" in cls:
        assert loaded.text_encoder_2 is not None and loaded.unet.config.addition_embed_type == "text_time"


def test_an_inpainting_unet_makes_an_inpainting_pipeline(tmp_path):
    pipe = build_inpaint()
    pipe.save_pretrained(tmp_path / "m")
    index = tmp_path / "m" / "model_index.json"
    index.write_text(json.dumps({**json.loads(index.read_text()), "_class_name": "StableDiffusionPipeline"}))
    assert type(sdviz.load_pipeline(tmp_path / "m")).__name__ == "StableDiffusionInpaintPipeline"
    assert pipeline_class({"_class_name": "StableDiffusionXLPipeline"}, 9).__name__ == "StableDiffusionXLInpaintPipeline"
    assert pipeline_class({"_class_name": "StableDiffusionImg2ImgPipeline"}, 4).__name__ == "StableDiffusionImg2ImgPipeline"


@pytest.mark.parametrize("name", ["StableDiffusion3Pipeline", "FluxPipeline", "StableVideoDiffusionPipeline",
                                  "StableDiffusionUpscalePipeline"])  # fmt: skip
def test_other_families_are_refused_naming_the_supported(name, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model_index.json").write_text(json.dumps({"_class_name": name}))
    with pytest.raises(ValueError, match=rf"{name} is not a family sdviz captures.*SD 1.x/2.x and SDXL.*"
                                         "StableDiffusionXLImg2ImgPipeline"):  # fmt: skip
        sdviz.load_pipeline(tmp_path / "m")
    assert len(SUPPORTED) == 6


def test_single_file_sd2_with_a_local_config(tmp_path):
    pipe = build_sd2()
    file = tmp_path / "v2-tiny.safetensors"
    save_file(sd2_original_checkpoint(pipe), str(file))
    with pytest.raises(ValueError, match="is an SD 2.x checkpoint; sdviz ships configs for SD 1.x only: pass config="):
        sdviz.load_pipeline(file)
    pipe.save_pretrained(tmp_path / "config")
    for weights in (tmp_path / "config").rglob("*.safetensors"):  # the configs alone, as a user would pass them
        weights.unlink()
    shutil.rmtree(tmp_path / "config" / "tokenizer")
    loaded = sdviz.load_pipeline(file, config=tmp_path / "config", device="cpu")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded).__name__ == "StableDiffusionPipeline"
    assert loaded.scheduler.config.prediction_type == "v_prediction"
    assert loaded.tokenizer.pad_token == "!" and loaded.tokenizer.pad_token_id == 0  # SD 2.x pads as OpenCLIP
    np.testing.assert_array_equal(_image(loaded), _image(pipe))
    trace = sdviz.generate(loaded, PROMPT, steps=2)
    assert trace.tokens.input_ids[-1] == 0 and trace.tokens.tokens[-1] == "!"
