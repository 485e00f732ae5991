"""The patch room of pyannote.audio (`lib/models/pyannote_compat.py`): whether upstream still needs
each patch with the pinned versions. A test failing here after an upgrade says a patch can go."""

from __future__ import annotations

from chaffee_assets.lib.models import pyannote_compat as compat


def test_pyannote_still_needs_both_patches_and_they_apply_once():
    import pyannote.audio.pipelines.speaker_diarization as sd

    assert compat.apply() == compat.apply() == {"plda_none": True, "from_hparams": True}
    assert sd.get_plda(None) is None  # patched: no PLDA stays no PLDA
    assert compat.from_hparams_rejects_hub_keywords()  # speechbrain is not touched by the patch
