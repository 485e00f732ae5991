-- Where a source came from: 'cli' (a user named it on the command line: local files allowed) or
-- 'listing' (a feed, a channel, the sensor: http(s) media only).
ALTER TABLE video_sources ADD COLUMN origin text NOT NULL DEFAULT 'listing'
    CHECK (origin IN ('cli', 'listing'));
CREATE INDEX video_sources_url ON video_sources (source_url);
