"""The arithmetic behind the benchmark tables that the closing notes quote."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import redkitchen  # noqa: E402
import sequence_redkitchen as seqbench  # noqa: E402

KEYS = seqbench.KEYS


def _map_result(trained: str, single: tuple, sequence: tuple) -> dict:
    return {"trained": trained, "rows": [
        {"label": "single-frame", "recall": dict(zip(KEYS, single))},
        {"label": "sequence", "recall": dict(zip(KEYS, sequence))},
        # replayed variants must not enter the means
        {"label": "sequence, multi_frames=1", "recall": dict(zip(KEYS, (0.0,) * 4))},
    ]}


def test_sequence_summary_means_spreads_and_shares():
    maps = [
        _map_result("single", (99.0, 95.0, 66.0, 20.0), (99.0, 96.0, 67.0, 21.0)),
        _map_result("single", (98.0, 93.0, 62.0, 22.0), (98.0, 94.0, 65.0, 23.0)),
        _map_result("sequence", (99.0, 96.0, 65.0, 25.0), (99.5, 97.0, 66.0, 26.0)),
    ]
    summary = seqbench.summarize_maps(maps)
    base = summary["means"]["single-trained/single-frame"]
    assert base["maps"] == 2
    assert base["recall"]["2cm_2deg"] == pytest.approx(64.0)
    assert base["spread"]["2cm_2deg"] == [62.0, 66.0]
    shares = summary["shares"]
    assert shares["relocalizer"]["2cm_2deg"] == pytest.approx(2.0)   # 66.0 - 64.0
    assert shares["loss"]["1cm_1deg"] == pytest.approx(4.0)          # 25.0 - 21.0
    assert shares["both"]["5cm_5deg"] == pytest.approx(3.0)          # 97.0 - 94.0


def test_sequence_summary_without_single_trained_maps_has_no_shares():
    summary = seqbench.summarize_maps([_map_result("sequence", (1, 2, 3, 4), (5, 6, 7, 8))])
    assert summary["shares"] == {}
    assert summary["means"]["sequence-trained/sequence"]["recall"]["1cm_1deg"] == 8


def test_budget_overrides_parse_to_typed_values():
    assert redkitchen.parse_budget("cpu:sequence=True;seed=1;learning_rate=0.01") == (
        "cpu", {"sequence": True, "seed": 1, "learning_rate": 0.01})
    assert redkitchen.parse_budget("quality") == ("quality", {})


def _row(method: str, cells, r1: float, median: float) -> dict:
    return {"method": method, "num_cells": cells, "image_height": None,
            "recall": {"10cm_5deg": 100.0, "5cm_5deg": 100.0, "2cm_2deg": 99.0, "1cm_1deg": r1},
            "median_translation_cm": median, "median_rotation_deg": 0.1, "timing_ms": {"total": 30.0},
            "fps": 33.0, "mapping_s": None}


def test_ransac_seed_means_keep_settings_apart_and_label_the_peer_plainly():
    rows = [_row("seqace (m, K=1000, refined, RANSAC seed 0)", 1000, 93.8, 0.32),
            _row("seqace (m, K=1000, refined, RANSAC seed 1)", 1000, 92.6, 0.30),
            _row("seqace (m, K=1000, no refinement, RANSAC seed 0)", 1000, 70.0, 0.70)]
    means = redkitchen.seed_means("map m", rows, "RANSAC seeds")
    refined = [m for m in means if m["method"].endswith("refined)")]
    assert len(means) == 2 and len(refined) == 1
    assert refined[0]["recall"]["1cm_1deg"] == pytest.approx(93.2)
    assert refined[0]["median_translation_cm"] == pytest.approx(0.31)
    assert refined[0]["method"] == "mean of 2 RANSAC seeds (map m, K=1000, refined)"
    peer = redkitchen.seed_means("structure peer (sift)", [_row("p", None, 93.8, 0.37), _row("p", None, 93.6, 0.37)],
                                 "RANSAC seeds")
    assert [p["method"] for p in peer] == ["mean of 2 RANSAC seeds (structure peer (sift))"]
    assert peer[0]["recall"]["1cm_1deg"] == pytest.approx(93.7)
