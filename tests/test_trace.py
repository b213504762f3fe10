import dataclasses
import json
import os
import stat

import pytest
import torch
from PIL import Image
from safetensors.torch import load as st_load
from safetensors.torch import save_file

import sdviz
from sdviz.trace import FORMAT_VERSION, Step, TokenInfo, Trace
from sdviz.trace_file import encode


@pytest.fixture()
def trace(embedded_pipe):
    return sdviz.generate(embedded_pipe, "a blue digit 4 on an orange background", steps=4, seed=2, negative_prompt="red")


def test_round_trip_exact(trace, tmp_path):
    path = trace.save(tmp_path / "run.sdviz")
    loaded = Trace.load(path)
    assert loaded == trace
    assert loaded.tokens == trace.tokens and loaded.negative_tokens == trace.negative_tokens
    assert loaded.image.tobytes() == trace.image.tobytes()
    assert [s.order_stage for s in loaded.steps] == [s.order_stage for s in trace.steps]
    assert loaded.scheduler_config == json.loads(json.dumps(trace.scheduler_config))


def test_round_trip_of_sparse_and_half_traces(embedded_pipe, tmp_path):
    t = sdviz.generate(embedded_pipe, "x", steps=5, every=2, keep=["x0"], dtype=torch.float16)
    loaded = Trace.load(t.save(tmp_path / "t.sdviz"))
    assert loaded == t and loaded.steps[0].x0.dtype == torch.float16 and loaded.steps[1].x0 is None


def test_equality_sees_a_changed_value(trace, tmp_path):
    loaded = Trace.load(trace.save(tmp_path / "a.sdviz"))
    loaded.steps[1].x0[0, 0, 0, 0] += 1e-3
    assert not loaded == trace


def test_truncated_file(trace, tmp_path):
    path = trace.save(tmp_path / "run.sdviz")
    data = path.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.sdviz"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a readable sdviz trace"):
            Trace.load(bad)


def test_corrupted_header(trace, tmp_path):
    path = trace.save(tmp_path / "run.sdviz")
    data = bytearray(path.read_bytes())
    data[8:20] = b"\xff" * 12
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a readable sdviz trace"):
        Trace.load(path)


def test_foreign_files(tmp_path):
    st = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, st)
    with pytest.raises(ValueError, match="not an sdviz trace"):
        Trace.load(st)
    junk = tmp_path / "junk.sdviz"
    junk.write_bytes(b"hello world, this is not a trace")
    with pytest.raises(ValueError, match="not a readable sdviz trace"):
        Trace.load(junk)
    with pytest.raises(FileNotFoundError, match="no trace file"):
        Trace.load(tmp_path / "missing.sdviz")


def _rewrite_meta(path, change, checksum=True):
    """Apply `change` to the sdviz metadata of a trace file, in place; with a new checksum, or none (older files)."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["sdviz"])
    change(meta)
    if checksum:
        path.write_bytes(encode(st_load(data), meta))
        return
    header["__metadata__"] = {"sdviz": json.dumps(meta)}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n :])


def test_newer_format_names_the_upgrade(tmp_path):
    t = Trace(prompt="p", tokens=TokenInfo("p", [1], [1], ["p"]), steps=[Step(0, 1.0, 1.0)],
              images=[Image.new("RGB", (2, 2))])
    path = t.save(tmp_path / "t.sdviz")
    _rewrite_meta(path, lambda meta: meta.update(version=FORMAT_VERSION + 1, sdviz_version="9.0.0"))
    with pytest.raises(ValueError, match=r"sdviz 9.0.0.*pip install -U sdviz"):
        Trace.load(path)


def test_version_1_files_still_load(trace, tmp_path):
    typed = ("prompts", "kept", "unet_evals", "wall_time", "error", "img2img", "compare_key", "latent_rgb")
    info = {"prompts": ["a", "b"], "keep": ["x0"], "every": 2, "dtype": "float16", "unet_evals": 4,
            "wall_time": 1.5, "img2img": True, "strength": 0.5, "compare_key": ["euler", 4],
            "latent_rgb": json.dumps({"weights": [[1.0, 0, 0, 0, 0]] * 3, "rmse": 0.1})}  # fmt: skip

    def to_version_1(meta):
        for k in typed:
            meta.pop(k)
        meta.update(version=1, info=info)

    path = trace.save(tmp_path / "old.sdviz")
    _rewrite_meta(path, to_version_1)
    old = Trace.load(path)
    assert old.prompts == ["a", "b"] and (old.kept.fields, old.kept.every, old.kept.dtype) == (["x0"], 2, "float16")
    assert old.unet_evals == 4 and old.wall_time == 1.5 and old.error is None and old.img2img.strength == 0.5
    assert old.compare_key == ("euler", 4) and old.latent_rgb.rmse == 0.1
    assert old.steps[1].x0.equal(trace.steps[1].x0) and old.tokens == trace.tokens


def test_atomic_save_leaves_no_half_file(trace, tmp_path, monkeypatch):
    path = tmp_path / "run.sdviz"
    trace.save(path)
    before = path.read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        trace.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.sdviz"]


def test_repr_is_short(trace):
    assert len(repr(trace)) < 200 and "4 steps" in repr(trace)
    assert "<|endoftext|>" in repr(trace.tokens) and len(repr(trace.tokens)) < 300
    step = repr(trace.steps[1])
    assert step.startswith(f"Step(1, t={trace.steps[1].timestep:g}, sigma=") and "latents (1, 4, 8, 8)" in step
    assert len(step) < 200  # shapes, not the numbers


def test_repr_counts_a_batch(trace):
    assert "more prompt" not in repr(trace) and "images" not in repr(trace)
    batch = dataclasses.replace(trace, prompts=[trace.prompt, "a green digit 3 on a white background", "x"],
                                images=trace.images * 4)  # fmt: skip
    assert f"Trace({trace.prompt!r} and 2 more prompts, " in repr(batch) and ", 4 images, seed=" in repr(batch)
    assert repr(Trace()) == "Trace('', no steps captured)"
    assert repr(dataclasses.replace(trace, steps=[], complete=False)) == f"Trace({trace.prompt!r}, no steps captured, incomplete)"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("steps"), "has no 'steps'"),
        (lambda m: m.update(version="2"), "version must be an int, got '2'"),
        (lambda m: m.update(tokens=["a"]), "tokens must be an object, got list"),
        (lambda m: m.update(num_images=3), r"tensor\(s\) \['images.1', 'images.2'\].*missing"),
        (lambda m: m["steps"][1].update(sigma="high"), r"steps\[1\].sigma must be a number, got 'high'"),
        (lambda m: m["kept"].update(colour=1), r"kept has unknown key\(s\) \['colour'\]"),
        (lambda m: m.update(seed=True), "seed must be int"),
        (lambda m: m.clear(), "not an sdviz trace"),
    ],
)
@pytest.mark.parametrize("checksum", [True, False], ids=["checksum", "no-checksum"])
def test_structurally_wrong_metadata_is_a_value_error(trace, tmp_path, change, message, checksum):
    path = trace.save(tmp_path / "run.sdviz")
    _rewrite_meta(path, change, checksum=checksum)
    with pytest.raises(ValueError, match=message):
        Trace.load(path)


def test_a_flipped_byte_in_tensor_data_is_caught(trace, tmp_path):
    path = trace.save(tmp_path / "run.sdviz")
    data = bytearray(path.read_bytes())
    data[-1000] ^= 0x01  # inside the tensor data: the file still parses as safetensors
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum does not match"):
        Trace.load(path)


def test_files_without_a_checksum_still_load(trace, tmp_path):
    path = trace.save(tmp_path / "old.sdviz")
    _rewrite_meta(path, lambda meta: None, checksum=False)
    assert b"sdviz_sha256" not in path.read_bytes()
    assert Trace.load(path) == trace


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_a_new_file_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = Trace(prompt="p").save(tmp_path / "t.sdviz")
        png = tmp_path / "t.png"
        Image.new("RGB", (2, 2)).save(png)  # the mode of sdviz's other outputs
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask == stat.S_IMODE(png.stat().st_mode)


def test_an_overwrite_keeps_the_files_mode(tmp_path):
    path = Trace(prompt="p").save(tmp_path / "t.sdviz")
    path.chmod(0o640)
    Trace(prompt="q").save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and Trace.load(path).prompt == "q"
