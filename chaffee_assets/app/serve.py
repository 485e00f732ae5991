"""`chaffee serve`: the search page and its JSON endpoint, a Starlette app on uvicorn (127.0.0.1
by default).

    GET /                      the page: a query box, speaker and video filters, ranked passages
                               with speaker, title and date, a player that starts at the passage
    GET /api/search?q=…        the same hits as JSON (k, speaker, video as on the page)
    GET /media/{video_id}      a video's recorded local file, for the player (http(s) media and
                               YouTube play from their own URLs)

The page works without JavaScript (the form is a GET, results rendered on the server); a little
script only moves the player to the passage a user picks.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlparse

from chaffee_assets.archive import search as archive_search
from chaffee_assets.archive import writer
from chaffee_assets.lib.errors import ChaffeeError, DownloadError, InvalidVideoId, SearchError
from chaffee_assets.lib.ids import youtube_id
from chaffee_assets.lib.media.download import local_path
from chaffee_assets.lib.models.registry import embedding_model_id
from chaffee_assets.lib.types import SearchHit
from chaffee_assets.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_K = 10
CHOICES_TTL_S = 60.0  # speakers and videos offered by the filters are re-read at most this often
BAD_REQUEST = (SearchError, InvalidVideoId)  # the asker's mistake (400); any other ChaffeeError is ours (503)
SERVICE_GRACE_S = 5.0  # a page waits this long for a model service that is away, then says so


AUDIO_SUFFIXES = {".flac", ".mp3", ".m4a", ".aac", ".wav", ".ogg", ".oga", ".opus", ".weba"}


def player(hit: SearchHit) -> dict[str, str]:
    """What plays a hit from its first second: {"kind": "youtube" | "audio" | "video" | "link", "src": …}."""
    start = max(0.0, hit.start)
    yid = youtube_id(hit.url)
    if yid is not None:
        return {"kind": "youtube", "src": f"https://www.youtube-nocookie.com/embed/{yid}?start={int(start)}"}
    u = urlparse(hit.url)
    kind = "audio" if Path(unquote(u.path)).suffix.lower() in AUDIO_SUFFIXES else "video"
    if u.scheme.lower() in ("http", "https"):
        return {"kind": kind, "src": hit.url}  # hit_url ends in #t=<start>
    if u.scheme.lower() == "file":
        return {"kind": kind, "src": f"/media/{hit.video_id}#t={start:.1f}".removesuffix(".0")}
    return {"kind": "link", "src": hit.url}


def hit_json(hit: SearchHit) -> dict:
    return {**hit.__dict__, "player": player(hit)}


class _Choices:
    """The filters' speakers and videos, read at most every CHOICES_TTL_S (a GROUP BY over every
    passage is not paid per page view)."""

    def __init__(self, connect, configured_model: str):
        self._connect, self._configured, self._lock = connect, configured_model, threading.Lock()
        self._at, self._value = -1e9, ([], [], None)

    def get(self) -> tuple[list, list, object]:
        """(speakers, videos, the ModelInfo of the model search answers from, or None)."""
        with self._lock:
            if time.monotonic() - self._at > CHOICES_TTL_S:
                with self._connect() as conn:
                    infos = {i.model: i for i in writer.model_infos(conn)}
                    try:
                        answering = infos.get(archive_search.choose_model(conn, self._configured))
                    except SearchError:  # nothing stored yet
                        answering = None
                    self._value = (archive_search.speakers(conn), archive_search.videos(conn), answering)
                self._at = time.monotonic()
            return self._value


def create_app(settings: Settings):
    """The Starlette application over one installation's archive and model service."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route
    from starlette.templating import Jinja2Templates

    from chaffee_assets.app.search import Searcher

    templates = Jinja2Templates(directory=str(resources.files("chaffee_assets.app") / "templates"))
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app):
        searcher = Searcher(settings, unavailable_grace_s=SERVICE_GRACE_S, call_timeout_s=60.0)
        state["searcher"] = searcher
        state["choices"] = _Choices(searcher.connect, embedding_model_id(settings.embedding_model))
        try:
            yield
        finally:
            await run_in_threadpool(searcher.close)

    def params(request) -> tuple[str, int, str | None, str | None]:
        q = request.query_params.get("q", "").strip()
        try:
            k = int(request.query_params.get("k", DEFAULT_K))
        except ValueError as e:
            raise SearchError(f"k must be a whole number, got {request.query_params.get('k')!r}") from e
        speaker = request.query_params.get("speaker", "").strip() or None
        video = request.query_params.get("video", "").strip() or None
        return q, k, speaker, video

    def run_search(q: str, k: int, speaker: str | None, video: str | None) -> list[SearchHit]:
        return state["searcher"].search(q, k=k, speaker=speaker, video=video)

    async def page(request):
        error, hits, status = None, [], 200
        try:
            q, k, speaker, video = params(request)
            if q:
                hits = await run_in_threadpool(run_search, q, k, speaker, video)
        except BAD_REQUEST as e:
            q, k, speaker, video = request.query_params.get("q", ""), DEFAULT_K, None, None
            error, status = str(e), 400
        except ChaffeeError as e:
            q, k, speaker, video = request.query_params.get("q", ""), DEFAULT_K, None, None
            error, status = str(e), 503
        try:
            speakers, videos, model = await run_in_threadpool(state["choices"].get)
        except ChaffeeError as e:
            speakers, videos, model = [], [], None
            error, status = error or str(e), status if error else 503
        return templates.TemplateResponse(request, "search.html", {
            "q": q, "k": k, "speaker": speaker or "", "video": video or "", "error": error,
            "hits": [hit_json(h) for h in hits], "speakers": speakers, "videos": videos, "model": model,
            "hms": archive_search.hms,
        }, status_code=status)

    async def api_search(request):
        try:
            q, k, speaker, video = params(request)
            hits = await run_in_threadpool(run_search, q, k, speaker, video)
        except BAD_REQUEST as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        except ChaffeeError as e:
            return JSONResponse({"error": str(e)}, status_code=503)
        return JSONResponse({"query": q, "k": k, "speaker": speaker, "video": video, "hits": [hit_json(h) for h in hits]})

    async def media(request):
        vid = request.path_params["video_id"]
        try:
            with state["searcher"].connect() as conn:
                source = archive_search.source_of(conn, vid)
        except InvalidVideoId as e:
            return Response(str(e), status_code=404)
        except ChaffeeError as e:
            return Response(str(e), status_code=503)
        try:
            path = local_path(source, vid) if source else None
        except DownloadError:  # a file:// URL on another host
            path = None
        if path is None or not path.is_file():
            return Response(f"video {vid} has no local media to play here", status_code=404)
        return FileResponse(path)

    return Starlette(
        routes=[Route("/", page), Route("/api/search", api_search), Route("/media/{video_id}", media)],
        lifespan=lifespan,
    )




def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the page until interrupted."""
    import uvicorn

    print(f"search page on http://{host}:{port}  (JSON: /api/search?q=…)", flush=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
