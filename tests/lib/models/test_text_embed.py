import logging
import math

import numpy as np
import pytest

from chaffee_assets.lib.errors import ModelNotFound, VideoError
from chaffee_assets.lib.types import Passage, Passages


def make_passages(video_id: str, texts: list[str]) -> Passages:
    return Passages(
        video_id=video_id,
        passages=tuple(
            Passage(video_id=video_id, ordinal=i, start=i * 10.0, end=i * 10.0 + 9, speaker="Chaffee", text=t, n_words=len(t.split()))
            for i, t in enumerate(texts)
        ),
    )


VIDEOS = {
    "vidA": ["Red meat is the most nutrient dense food.", "Plants have defence chemicals.", "Insulin and fat storage."],
    "vidB": ["Sleep matters for recovery.", "The carnivore diet removes all plant foods.", "Oxalates in spinach.",
             "Ketosis burns fat for fuel.", "Cholesterol is not the enemy."],
    "vidC": ["Sunlight and vitamin D.", "Why fibre is not essential."],
}


@pytest.fixture(scope="module")
def embedder(runtime):
    from chaffee_assets.lib.models.text_embed import TextEmbedder

    return TextEmbedder("minilm", runtime, batch_size=4)


def test_unknown_model_fails_before_loading_anything(runtime):
    from chaffee_assets.lib.models.text_embed import TextEmbedder

    with pytest.raises(ModelNotFound, match="no-such-model"):
        TextEmbedder("no-such-model", runtime)


@pytest.mark.slow
def test_batches_span_videos_and_match_per_video_embedding(embedder, caplog):
    passages = {vid: make_passages(vid, texts) for vid, texts in VIDEOS.items()}
    passages["vidEmpty"] = make_passages("vidEmpty", [])
    n = sum(len(t) for t in VIDEOS.values())
    with caplog.at_level(logging.INFO, logger="chaffee_assets.lib.models.text_embed"):
        out = embedder.embed_videos(passages)
    batch_logs = [r for r in caplog.records if r.getMessage().startswith("Generating embeddings for")]
    assert len(batch_logs) == math.ceil(n / 4) == embedder.last_stats.batches
    assert [r.args[0] for r in batch_logs] == [4, 4, 2]
    assert embedder.last_stats.passages == n and embedder.last_stats.passages_per_s > 0

    assert set(out) == set(passages)
    assert out["vidEmpty"].vectors.shape == (0, 384)
    for vid, texts in VIDEOS.items():
        pv = out[vid]
        assert pv.video_id == vid and pv.model == "all-MiniLM-L6-v2" and pv.dim == 384
        assert pv.vectors.dtype == np.float32 and pv.vectors.shape == (len(texts), 384)
        np.testing.assert_allclose(np.linalg.norm(pv.vectors, axis=1), 1.0, atol=1e-5)
        alone = embedder.embed_videos({vid: passages[vid]})[vid].vectors
        np.testing.assert_allclose(pv.vectors, alone, atol=2e-5)


@pytest.mark.slow
def test_tokens_and_long_queries(embedder):
    from chaffee_assets.lib.models.text_embed import TokenCounter

    assert embedder.dim == 384 and embedder.max_tokens == 254  # 256 minus [CLS] and [SEP]
    assert embedder.count_tokens(" Hello world.") == 3
    counter = TokenCounter("minilm", embedder.runtime.cache_dir)
    assert counter.max_tokens == embedder.max_tokens
    assert counter.count_tokens(" carnivore diet") == embedder.count_tokens(" carnivore diet")
    vec = embedder.embed_query("meat " * 2000)  # 10 000 characters: truncated, not an error
    assert vec.shape == (384,) and abs(float(np.linalg.norm(vec)) - 1) < 1e-5


@pytest.mark.slow
def test_passages_of_another_video_are_refused(embedder):
    with pytest.raises(VideoError, match="vidA"):
        embedder.embed_videos({"vidA": make_passages("vidB", ["x"])})
