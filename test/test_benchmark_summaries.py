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
