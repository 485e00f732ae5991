-- Where each video partition comes from: filled by the sensor and `chaffee ingest` before the
-- partition is added, read by the `audio` asset. Kept apart from `videos` (which holds what was
-- actually downloaded) so a discovered-but-not-yet-downloaded video is never visible to search.
CREATE TABLE video_sources (
    video_id       text PRIMARY KEY,
    source_url     text NOT NULL,
    title          text,
    upload_date    date,
    discovered_at  timestamptz NOT NULL DEFAULT now()
);
