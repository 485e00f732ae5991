"""Patches of pyannote.audio's internals, in one room: what pyannote.audio 4.0.7 needs to run with
speechbrain 1.1.2, the packaged ECAPA folder and no PLDA. Applied explicitly (`apply()`) by the code
that builds a pyannote pipeline, before it does; each patch checks that pyannote still needs it, and
tests/lib/models/test_pyannote_compat.py says whether upstream still does.

1. `get_plda(None)` raises TypeError in 4.0.7; with AgglomerativeClustering no PLDA is needed, so
   None must stay None.
2. pyannote calls `EncoderClassifier.from_hparams(..., token=, huggingface_cache_dir=, revision=,
   run_opts={"device": torch.device})`; speechbrain 1.1.2 passes unknown keywords on to the model's
   constructor, which rejects them, and wants the device as a string. For a local folder the
   `savedir` ("<cache_dir>/speechbrain", i.e. "None/speechbrain" in the working folder) becomes the
   folder itself.
Only pyannote's own module-level references are replaced; speechbrain is not touched.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TESTED_WITH = {"pyannote.audio": "4.0.7", "speechbrain": "1.1.2"}
_DROPPED = ("token", "huggingface_cache_dir", "revision")


def plda_none_is_broken() -> bool:
    """Whether pyannote's `get_plda(None)` raises instead of giving None."""
    import pyannote.audio.pipelines.speaker_diarization as sd

    try:
        return sd.get_plda(None) is not None
    except TypeError:
        return True


def from_hparams_rejects_hub_keywords() -> bool:
    """Whether speechbrain's `EncoderClassifier.from_hparams` lacks the keywords pyannote passes."""
    from speechbrain.inference.speaker import EncoderClassifier

    params = inspect.signature(EncoderClassifier.from_hparams).parameters
    return not all(k in params for k in _DROPPED)


def apply() -> dict[str, bool]:
    """Apply the patches still needed (idempotent); {patch: applied now or before}."""
    import pyannote.audio.pipelines.speaker_diarization as sd
    import pyannote.audio.pipelines.speaker_verification as sv

    done = getattr(sd, "_chaffee_patches", {})
    if not done:
        done = {"plda_none": plda_none_is_broken(), "from_hparams": from_hparams_rejects_hub_keywords()}
        if done["plda_none"]:
            sd.get_plda = _plda_or_none(sd.get_plda)
        if done["from_hparams"]:
            sv.SpeechBrain_EncoderClassifier = _local_encoder_classifier(sv.SpeechBrain_EncoderClassifier)
        sd._chaffee_patches = done
        log.debug("pyannote patches: %s", done)
    return done


def _plda_or_none(original_get_plda: Any) -> Any:
    def get_plda(plda: Any, *args: Any, **kwargs: Any) -> Any:
        return None if plda is None else original_get_plda(plda, *args, **kwargs)

    return get_plda


def _local_encoder_classifier(original_classifier: Any) -> type:
    class EncoderClassifier:
        @staticmethod
        def from_hparams(source: str, savedir: str | None = None, run_opts: dict | None = None, **kwargs: Any) -> Any:
            for dropped in _DROPPED:
                kwargs.pop(dropped, None)
            run_opts = {k: (str(v) if k == "device" else v) for k, v in (run_opts or {}).items()}
            local = Path(str(source)).is_dir()  # a local folder is its own savedir (no "None/speechbrain")
            return original_classifier.from_hparams(
                source=source, savedir=str(source) if local else savedir, run_opts=run_opts, **kwargs
            )

    return EncoderClassifier
