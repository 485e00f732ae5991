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


def _vad_passes_at_once(monkeypatch, tmp_path, fixtures_dir, cores: int, callers: int) -> int:
    """The most VAD passes of `callers` concurrent requests holding a waveform at the same moment
    (from reading it to the regions found), on a service given `cores` (real silero, no other model)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from chaffee_assets.lib.models import service, threads

    url = ArtifactStore(str(tmp_path)).save_waveform("audio", "jfk", read_audio(fixtures_dir / "jfk.flac"))
    lock, holding, most = threading.Lock(), [0], [0]
    read, find = service.read_waveform, service.vad.speech_regions

    def reading(u):
        with lock:
            holding[0] += 1
            most[0] = max(most[0], holding[0])
        return read(u)

    def finding(wav, **kw):
        try:
            time.sleep(0.5)  # long enough for the other callers to arrive while this pass holds its waveform
            return find(wav, **kw)
        finally:
            with lock:
                holding[0] -= 1

    monkeypatch.setattr(service, "read_waveform", reading)
    monkeypatch.setattr(service.vad, "speech_regions", finding)
    try:
        models = SpeechModels(ServiceConfig(device="cpu", model_cache=str(tmp_path / "models"), threads=cores))
        with ThreadPoolExecutor(callers) as pool:
            answers = list(pool.map(lambda i: models.speech_regions(url, f"v{i}"), range(callers)))
    finally:
        threads.stop_sharing()  # the cores given here are this test's only
    assert all(a.value and a.value[0][0] < 1.0 for a in answers)  # every caller got jfk's speech
    return most[0]


def test_whole_audio_vad_passes_are_bounded_by_the_cores_and_read_their_waveform_only_once_let_in(monkeypatch, tmp_path, fixtures_dir):
    # a pass holds ~3x its waveform at its peak: with four 85-minute talks arriving together the replica peaked at 5.7 GB
    assert _vad_passes_at_once(monkeypatch, tmp_path / "two", fixtures_dir, cores=2, callers=4) == 1
    assert _vad_passes_at_once(monkeypatch, tmp_path / "four", fixtures_dir, cores=4, callers=4) == 2
