"""The model service's work without Ray (`SpeechModels`, the class a replica hosts): which models it
loads, and where it says a request's time went. Real packaged models on the CPU."""

from __future__ import annotations

from chaffee_assets.lib.artifacts import ArtifactStore
from chaffee_assets.lib.models.service import ServiceConfig, SpeechModels, audio_ref
from chaffee_assets.lib.types import AsrOptions
from chaffee_assets.lib.voices import read_audio


def _models(model_cache, *warm: str) -> SpeechModels:
    return SpeechModels(ServiceConfig(device="cpu", model_cache=str(model_cache), warm=warm))


def test_the_language_check_is_loaded_beside_an_english_only_whisper_only(model_cache):
    assert "language-check:base" in _models(model_cache, "whisper:tiny.en", "language:base").loads
    assert "language-check:base" in _models(model_cache, "language:base", "whisper:tiny.en").loads  # in any order
    assert "language-check:base" not in _models(model_cache, "whisper:base", "language:base").loads  # detects itself


def test_a_transcription_says_the_language_check_took_its_own_time(model_cache, fixtures_dir, tmp_path):
    models = _models(model_cache, "whisper:tiny.en", "language:base")
    wav = read_audio(fixtures_dir / "jfk.flac")
    url = ArtifactStore(str(tmp_path)).save_waveform("audio", "jfk", wav)
    served = models.transcribe(audio_ref("jfk", url, len(wav) / 16_000, [(0.3, 10.8)]), AsrOptions(model="tiny.en"))
    assert served.value.info.language_checked == 1 and served.value.words
    assert set(served.seconds_by_model) == {"whisper", "language-check"}
    assert 0 < served.seconds_by_model["language-check"] < served.value.info.processing_seconds
    assert served.seconds_by_model["whisper"] > 0


def test_models_compute_in_small_batches_on_a_cpu_and_configured_ones_on_a_gpu(tmp_path):
    from chaffee_assets.lib.models.runtime import CPU_BATCH, ModelRuntime

    cpu, gpu = ModelRuntime("cpu", "int8", tmp_path, 2), ModelRuntime("cuda", "float16", tmp_path)
    assert cpu.batch("ecapa", 64) == CPU_BATCH["ecapa"] < 64 and cpu.batch("text", 256) == CPU_BATCH["text"] < 256
    assert cpu.batch("ecapa", 4) == 4  # a smaller configured batch holds
    assert gpu.batch("ecapa", 64) == 64 and gpu.batch("text", 256) == 256
