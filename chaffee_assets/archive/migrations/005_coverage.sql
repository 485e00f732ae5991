-- Model coverage kept as data, so search reads it in O(1) instead of probing every video's vectors:
--   videos.passages            the number of passages a video has (set by the writer with its segments);
--   video_models               (model, video) for every video that has that model's vectors;
--   embedding_models.videos_covered and archive_totals.videos_with_passages: counters kept by the
--   triggers below in the writer's own transaction (a crash leaves them with the old rows).
ALTER TABLE videos ADD COLUMN passages integer NOT NULL DEFAULT 0;
UPDATE videos v SET passages = (SELECT count(*) FROM segments s WHERE s.video_id = v.video_id);

CREATE TABLE archive_totals (
    id                    boolean PRIMARY KEY DEFAULT true CHECK (id),
    videos_with_passages  integer NOT NULL DEFAULT 0
);
INSERT INTO archive_totals (videos_with_passages) SELECT count(*) FROM videos WHERE passages > 0;

ALTER TABLE embedding_models ADD COLUMN videos_covered integer NOT NULL DEFAULT 0;
CREATE TABLE video_models (
    model     text NOT NULL REFERENCES embedding_models (model) ON DELETE CASCADE,
    video_id  text NOT NULL REFERENCES videos (video_id) ON DELETE CASCADE,
    PRIMARY KEY (model, video_id)
);
CREATE INDEX video_models_video ON video_models (video_id);
INSERT INTO video_models (model, video_id) SELECT DISTINCT model, video_id FROM segment_vectors;
UPDATE embedding_models m SET videos_covered = (SELECT count(*) FROM video_models c WHERE c.model = m.model);

CREATE FUNCTION chaffee_count_video_models() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE embedding_models SET videos_covered = videos_covered + 1 WHERE model = NEW.model;
    ELSE
        UPDATE embedding_models SET videos_covered = videos_covered - 1 WHERE model = OLD.model;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER video_models_count AFTER INSERT OR DELETE ON video_models
    FOR EACH ROW EXECUTE FUNCTION chaffee_count_video_models();

CREATE FUNCTION chaffee_count_videos_with_passages() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta integer := 0;
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.passages > 0 THEN delta := delta + 1; END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.passages > 0 THEN delta := delta - 1; END IF;
    IF delta <> 0 THEN
        UPDATE archive_totals SET videos_with_passages = videos_with_passages + delta;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER videos_count AFTER INSERT OR UPDATE OF passages OR DELETE ON videos
    FOR EACH ROW EXECUTE FUNCTION chaffee_count_videos_with_passages();


-- A speaker filter reads the speaker on the vector's own row (no probe into `segments` per
-- candidate): lower(speaker), written with the vectors (a change of speaker is a change of passages,
-- which replaces every model's vectors), and an index for the exact path over one speaker's.
ALTER TABLE segment_vectors ADD COLUMN speaker_key text;
UPDATE segment_vectors sv SET speaker_key = lower(s.speaker)
    FROM segments s WHERE s.video_id = sv.video_id AND s.ordinal = sv.ordinal;
ALTER TABLE segment_vectors ALTER COLUMN speaker_key SET NOT NULL;
CREATE INDEX segment_vectors_speaker ON segment_vectors (model, speaker_key);
