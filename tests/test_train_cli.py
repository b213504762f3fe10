import csv

import pytest

from sdviz.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ae", "vae"])
def test_train_our_autoencoders_from_the_command_line(tmp_path, model, capsys):
    out = tmp_path / model
    rc = main(["train", "autoencoder", "--model", model, "--steps", "4", "--batch-size", "2", "--threads", "1",
               "--quiet", "--out", str(out)])
    assert rc == 0 and "loss curve" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "losses.csv").open()))
    assert rows and ("kl" in rows[0]) == (model == "vae")
    assert (out / "losses.png").stat().st_size > 0
    assert (out / "model" / "model.safetensors").is_file()
