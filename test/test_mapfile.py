"""The map file: round trip, and refusal of truncated, foreign, newer or pickled files."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from seqace_ros.head import SceneHead
from seqace_ros.mapfile import FORMAT_VERSION, METADATA_KEY, MapFileError, SceneMap, load_map, read_metadata

ENC = {"name": "xfeat", "weights_sha256": "abc123"}


def _map(width=32):
    torch.manual_seed(0)
    head = SceneHead(in_dim=64, width=width, num_blocks=1, mean=torch.tensor([1.0, -2.0, 3.5]))
    return SceneMap(head=head, metadata={"encoder": ENC, "targets": "keypoint"},
                    scene_points=np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32))


def test_round_trip_predictions_and_metadata(tmp_path):
    m = _map()
    path = m.save(tmp_path / "m.safetensors")
    loaded = load_map(path, expect_encoder=ENC)
    x = torch.randn(50, 64)
    with torch.no_grad():
        a, b = m.head(x), loaded.head(x)
    # fp16 weights: small relative error, and the mean (kept fp32) exactly.
    assert torch.allclose(a, b, atol=5e-3 * (1 + a.abs().max()))
    assert torch.equal(loaded.head.mean, m.head.mean)
    assert loaded.metadata["format_version"] == FORMAT_VERSION
    assert loaded.metadata["head"] == {"in_dim": 64, "width": 32, "num_blocks": 1}
    assert np.allclose(loaded.scene_points, m.scene_points)


def test_truncated_file_is_refused(tmp_path):
    path = _map().save(tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MapFileError, match="truncated|corrupt"):
        load_map(path)


def test_map_for_another_encoder_is_refused(tmp_path):
    path = _map().save(tmp_path / "m.safetensors")
    with pytest.raises(MapFileError, match="made for encoder 'xfeat'.*'ace'"):
        load_map(path, expect_encoder={"name": "ace", "weights_sha256": "abc123"})
    with pytest.raises(MapFileError, match="weights"):
        load_map(path, expect_encoder={"name": "xfeat", "weights_sha256": "fff"})


def test_relocalizer_refuses_a_loaded_map_made_with_other_weights():
    """A SceneMap built in memory (not through load_map) is checked too, before any use."""
    from seqace_ros.relocalization import Relocalizer
    with pytest.raises(MapFileError, match="weights abc123"):
        Relocalizer(_map(), device="cpu")


def test_newer_format_is_refused(tmp_path):
    path = tmp_path / "new.safetensors"
    meta = {"format": "seqace_ros.map", "format_version": FORMAT_VERSION + 1}
    save_file({"x": torch.zeros(1)}, str(path), metadata={METADATA_KEY: json.dumps(meta)})
    with pytest.raises(MapFileError, match="newer"):
        read_metadata(path)


def test_other_files_are_refused_without_unpickling(tmp_path):
    pickled = tmp_path / "evil.pt"
    torch.save({"a": 1}, pickled)
    with pytest.raises(MapFileError, match="not a readable seqace_ros map"):
        load_map(pickled)
    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(1)}, str(plain))
    with pytest.raises(MapFileError, match="not a seqace_ros map"):
        load_map(plain)
    with pytest.raises(MapFileError, match="does not exist"):
        load_map(tmp_path / "missing.safetensors")


def test_saved_map_gets_the_mode_the_umask_gives_new_files(tmp_path):
    # safetensors writes 0600 whatever the umask; a node running as another user must read the map.
    import os
    import stat

    old = os.umask(0o022)
    try:
        a = _map().save(tmp_path / "a.safetensors")
        os.umask(0o077)
        b = _map().save(tmp_path / "b.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(a.stat().st_mode) == 0o644
    assert stat.S_IMODE(b.stat().st_mode) == 0o600
