"""The node's engine names the missing package when the sequence mode cannot be imported (a colcon
install without scipy used to report only that the installation "lacks" the sequence module)."""

from __future__ import annotations

import sys

import pytest

from seqace_ros.ros import engine as engine_mod


def test_sequence_mode_error_names_the_missing_package(monkeypatch):
    import seqace_ros.relocalization as reloc_pkg

    monkeypatch.setattr(reloc_pkg, "Relocalizer", lambda *a, **k: object())
    # As if scipy were not installed: importing the sequence mode (landmarks needs scipy.spatial) fails.
    for name in ("seqace_ros.relocalization.sequence", "seqace_ros.relocalization.landmarks"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "scipy.spatial", None)
    eng = engine_mod.LocalizationEngine(engine_mod.EngineSettings(mode="sequence"))
    with pytest.raises(engine_mod.EngineError, match="scipy"):
        eng._make(object(), "sequence")
    assert not engine_mod.sequence_mode_available()
