"""A user-supplied feature network by path (a TorchScript file, as for a local Inception-v3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from synthkit.errors import ConfigError, DataError
from synthkit.evaluate.images import evaluate_images, feature_network, save_feature_network
from synthkit.images import ImageSet


class TinyFeatureNet(nn.Module):
    """Stands in for Inception: RGB at a fixed size in, (features, logits) out."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert x.shape[1:] == (3, 12, 12)
        h = torch.relu(self.conv(x)).flatten(1)
        return h, self.head(h)


@pytest.fixture(scope="module")
def digit_halves() -> tuple[ImageSet, ImageSet]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = ImageSet.from_array(d.images / 16.0, labels=d.target.tolist())
    return images.subset(slice(0, 300)), images.subset(slice(300, 600))


def test_scripted_network_by_path_gives_fid_and_is(digit_halves, tmp_path):
    real, other = digit_halves
    path = save_feature_network(TinyFeatureNet(), tmp_path / "tiny-inception.pt", input_size=12, channels=3,
                                name="tiny Inception")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-inception.pt"]  # no temp file left
    report = evaluate_images(real, other, features=str(path), grids=False)
    assert report.features == "tiny Inception"
    assert "(features: tiny Inception)" in report.metrics["quality.fid"].meaning
    assert report.value("quality.inception_score") is not None and report.value("quality.fid") > 0
    noise = ImageSet.from_array(np.random.default_rng(0).integers(0, 256, (300, 8, 8), dtype=np.uint8))
    assert evaluate_images(real, noise, features=path, grids=False).value("quality.fid") > report.value("quality.fid")


def test_plain_torchscript_file_and_keyword_settings(digit_halves, tmp_path):
    # a file scripted without synthkit: settings come from the keywords, the name from the file
    torch.jit.script(TinyFeatureNet().eval()).save(str(tmp_path / "inception_v3.pt"))
    feats = feature_network(tmp_path / "inception_v3.pt", input_size=12, channels=3)
    assert feats.name == "inception_v3"
    real, _ = digit_halves
    out = feats.fit(real).features(real.subset(slice(0, 5)))
    assert out.shape == (5, 8 * 6 * 6)
    single = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))  # features only: no Inception Score
    save_feature_network(single, tmp_path / "flat.pt")
    report = evaluate_images(real, digit_halves[1], features=tmp_path / "flat.pt", grids=False)
    assert report.features == "flat" and report.value("quality.inception_score") is None


def test_exported_program_file(digit_halves, tmp_path):
    net = TinyFeatureNet().eval()
    program = torch.export.export(net, (torch.zeros(2, 3, 12, 12),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(tmp_path / "net.pt2"))
    feats = feature_network(tmp_path / "net.pt2", input_size=12, channels=3).fit(digit_halves[0])
    images = digit_halves[0].subset(slice(0, 4))
    want = net(torch.zeros(1, 3, 12, 12))[0].shape[1]
    assert feats.features(images).shape == (4, want) and feats.probabilities(images).shape == (4, 10)


def test_bad_feature_paths_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not found") as info:
        feature_network(tmp_path / "missing.pt")
    assert "downloads nothing" in info.value.hint
    (tmp_path / "junk.pt").write_bytes(b"not a network")
    with pytest.raises(DataError, match="not a TorchScript file"):
        feature_network(tmp_path / "junk.pt")
    (tmp_path / "w.safetensors").write_bytes(b"{}")
    with pytest.raises(ConfigError, match="weights only") as info:
        feature_network(tmp_path / "w.safetensors")
    assert "TorchModuleFeatures" in info.value.hint
