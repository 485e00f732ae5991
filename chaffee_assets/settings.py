"""One settings object, read from the environment and `.env`.

The names users of the old pipeline already have keep their meaning: `ASR_WORKERS` (the `gpu`
pool limit), `BATCH_SIZE` (embedding batch), `ASSUME_MONOLOGUE`, `USE_SIMPLE_DIARIZATION`,
`PYANNOTE_MODEL`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DiarizationMode = Literal["hybrid", "auto", "pyannote", "simple", "off"]
DeviceSetting = Literal["auto", "cpu", "cuda"]
AudioRetention = Literal["keep", "drop"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True)

    # where things live
    state_dir: Path = Field(Path(".chaffee"), alias="CHAFFEE_HOME", description="State folder: embedded Postgres, Dagster home, artifacts.")
    database_url: str | None = Field(None, alias="DATABASE_URL", description="An external Postgres (with pgvector); unset: the embedded one in the state folder.")
    dagster_database_url: str | None = Field(
        None, alias="DAGSTER_DATABASE_URL", description="Dagster's storage, when DATABASE_URL is set; unset: the archive's database.",
    )
    artifact_root: str | None = Field(None, alias="ARTIFACT_ROOT", description="Intermediate artifacts: a folder or any fsspec URL (s3://…); default <state>/artifacts.")
    audio_retention: AudioRetention = Field(
        "keep", alias="AUDIO_RETENTION",
        description="keep: each video's decoded audio stays in the artifact store as 16-bit FLAC (lossless, ~half a WAV); "
        "drop: deleted once its rows are in the archive, fetched again from the source if a step needs it later (re-naming).",
    )
    channel_url: str = Field("https://www.youtube.com/@anthonychaffeemd/videos", alias="CHANNEL_URL")

    # models
    model_cache: Path = Field(
        Path("~/.cache/chaffee_assets/models"), alias="MODEL_CACHE",
        description="Where packaged models that ship in an awkward shape (split files) are assembled once; shared by every state folder.",
    )
    whisper_model: str = Field("tiny.en", alias="WHISPER_MODEL", description="Packaged alias (tiny.en, base) or a CTranslate2 model folder.")
    whisper_language: str | None = Field(None, alias="WHISPER_LANGUAGE", description="Fixed language code; unset: detected (or en for .en models).")
    whisper_batch_size: int = Field(8, alias="WHISPER_BATCH_SIZE")
    whisper_prompt: str | None = Field(
        None, alias="WHISPER_PROMPT",
        description="An initial prompt for every whisper window: the channel's vocabulary in a sentence (names, terms), e.g. 'Anthony Chaffee on carnivore diet, ketosis, oxalates.'",
    )
    vad_threshold: float = Field(
        0.5, alias="VAD_THRESHOLD", gt=0, lt=1,
        description="silero VAD's speech probability cut; lower finds quieter speakers and more noise (README, bench/speech_quality.py).",
    )
    whisper_hotwords: str | None = Field(None, alias="WHISPER_HOTWORDS", description="Words whisper should prefer, comma or space separated (faster-whisper's hotwords).")
    whisper_language_check: str | None = Field(
        "base", alias="WHISPER_LANGUAGE_CHECK",
        description="A multilingual whisper model (alias or folder) that listens to a few windows of each talk an English-only "
        "WHISPER_MODEL transcribes, and flags speech in another language (transcript/trusted); empty: no check.",
    )
    embedding_model: str = Field("minilm", alias="EMBEDDING_MODEL", description="Packaged alias (minilm, mpnet) or a sentence-transformers folder.")
    pyannote_model: str | None = Field(None, alias="PYANNOTE_MODEL", description="A local pyannote pipeline folder (community-1, 3.1); unset: packaged segmentation-3.0 + ECAPA.")
    device: DeviceSetting = Field("auto", alias="DEVICE")

    # the model service (Ray Serve)
    ray_address: str | None = Field(
        None, alias="RAY_ADDRESS",
        description="An existing Ray cluster for the model service (host:port, or ray://host:10001); unset: a local head started by `chaffee up`.",
    )
    service_replicas: int = Field(0, alias="SERVICE_REPLICAS", ge=0, description="Model service replicas; 0: one per GPU of the cluster, one on a CPU machine.")
    service_resource: str | None = Field(
        None, alias="SERVICE_RESOURCE",
        description="A custom Ray resource a node must offer to host the replicas (e.g. `chaffee_gpu` on the GPU boxes).",
    )
    service_start_timeout_seconds: float = Field(900.0, alias="SERVICE_START_TIMEOUT_SECONDS", gt=0)

    # diarization and voices
    diarization: DiarizationMode = Field(
        "hybrid", alias="DIARIZATION",
        description="hybrid: the monologue check, then ECAPA clustering where it hears several voices; auto: the check, then pyannote; "
        "pyannote, simple, off: always that (README, bench/speech_quality.py).",
    )
    assume_monologue: bool = Field(False, alias="ASSUME_MONOLOGUE")
    use_simple_diarization: bool = Field(False, alias="USE_SIMPLE_DIARIZATION")
    min_speakers: int | None = Field(None, alias="MIN_SPEAKERS", ge=1, description="Fewest speakers diarization may find in a video (pyannote, simple); unset: free.")
    max_speakers: int | None = Field(None, alias="MAX_SPEAKERS", ge=1, description="Most speakers diarization may find in a video; unset: free.")
    host_speaker: str = Field("Chaffee", alias="HOST_SPEAKER")
    voices_dir: Path = Field(Path("voices"), alias="VOICES_DIR")
    voice_threshold: float = Field(0.5, alias="VOICE_THRESHOLD", description="Cosine similarity to a profile needed to take its name.")

    # passages
    passage_max_seconds: float = Field(45.0, alias="PASSAGE_MAX_SECONDS")
    passage_max_tokens: int = Field(200, alias="PASSAGE_MAX_TOKENS")

    # throughput
    # 2: one step loads its inputs or hands its slot over while the other computes; on a 2-core CPU,
    # two one-thread models did 1.4-2.2x the work of one two-thread model (bench/throughput.py)
    asr_workers: int = Field(2, alias="ASR_WORKERS", ge=1, description="Limit of the `gpu` concurrency pool, and the transcriptions the model service runs at once.")
    batch_size: int = Field(256, alias="BATCH_SIZE", ge=1, description="Embedding batch size (passages).")
    download_workers: int = Field(4, alias="DOWNLOAD_WORKERS", ge=1, description="Runs in flight at once (the run queue's limit).")
    model_threads: int = Field(
        0, alias="MODEL_THREADS", ge=0,
        description="CPU cores the model service's models share on a CPU machine; 0: every core (whisper gets them divided by ASR_WORKERS, torch models divided by the calls computing at the moment).",
    )
    pool_poll_seconds: float = Field(
        0.5, alias="POOL_POLL_SECONDS", gt=0, le=15,
        description="How often a step waiting for a `gpu` slot asks again (Dagster's own back-off grows to 15 s).",
    )
    event_log_connections: int = Field(
        1, alias="EVENT_LOG_CONNECTIONS", ge=0,
        description="Connections each Dagster process holds open to its event log; 0: a new one per statement (dagster-postgres's default).",
    )
    download_timeout_seconds: float = Field(
        3600.0, alias="DOWNLOAD_TIMEOUT_SECONDS", gt=0,
        description="Overall deadline of one video's download (retries included); a stalled or trickling server fails the video.",
    )
    max_download_bytes: int = Field(3 << 30, alias="MAX_DOWNLOAD_BYTES", gt=0, description="Largest media file downloaded.")
    listing_timeout_seconds: float = Field(120.0, alias="LISTING_TIMEOUT_SECONDS", gt=0, description="Deadline of a feed or channel listing.")
    sensor_max_per_tick: int = Field(25, alias="SENSOR_MAX_PER_TICK", ge=1)
    sensor_interval_seconds: int = Field(3600, alias="SENSOR_INTERVAL_SECONDS", ge=30)
    channel_quiet_days: float = Field(
        14.0, alias="CHANNEL_QUIET_DAYS", gt=0,
        description="Days without a video downloaded after which `audio`'s freshness check fails (a dead or moved channel).",
    )

    @field_validator(
        "database_url", "dagster_database_url", "artifact_root", "pyannote_model", "whisper_language", "ray_address",
        "service_resource", "whisper_prompt", "whisper_hotwords", "whisper_language_check", "min_speakers", "max_speakers", mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        return None if v == "" else v

    def to_environment(self) -> dict[str, str]:
        """These settings as the environment of a process started from here (the daemon started
        for a CLI ingest reads the same settings as the CLI, whether they came from the
        environment, `.env` or the caller)."""
        out = {}
        for name, f in type(self).model_fields.items():
            value = getattr(self, name)
            if f.alias and value is not None:
                if isinstance(value, bool):
                    value = "true" if value else "false"
                elif isinstance(value, Path):
                    value = value.expanduser().resolve()
                out[f.alias] = str(value)
        return out

    @property
    def diarization_method(self) -> DiarizationMode:
        """The effective method, honouring the old knobs."""
        if self.assume_monologue:
            return "off"
        if self.use_simple_diarization:
            return "simple"
        return self.diarization

    @property
    def state_path(self) -> Path:
        return self.state_dir.expanduser().resolve()

    @property
    def dagster_home(self) -> Path:
        return self.state_path / "dagster"

    @property
    def pg_data_dir(self) -> Path:
        return self.state_path / "pgdata"

    @property
    def model_cache_dir(self) -> Path:
        return self.model_cache.expanduser().resolve()

    @property
    def artifact_url(self) -> str:
        return self.artifact_root or str(self.state_path / "artifacts")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
