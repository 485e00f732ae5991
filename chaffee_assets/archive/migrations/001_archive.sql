-- The search archive. Vectors are keyed by (segment, embedding model); one HNSW index per model is
-- created by the code that first writes that model's vectors (its dimension is known only then).
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE videos (
    video_id     text PRIMARY KEY,
    title        text NOT NULL,
    source_url   text NOT NULL,
    upload_date  date,
    duration_s   double precision NOT NULL DEFAULT 0,
    size_bytes   bigint NOT NULL DEFAULT 0,
    channel      text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE segments (
    video_id  text NOT NULL REFERENCES videos (video_id) ON DELETE CASCADE,
    ordinal   integer NOT NULL,
    start_s   double precision NOT NULL,
    end_s     double precision NOT NULL,
    speaker   text NOT NULL,
    text      text NOT NULL,
    PRIMARY KEY (video_id, ordinal)
);

CREATE TABLE embedding_models (
    model       text PRIMARY KEY,
    dim         integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE segment_vectors (
    video_id   text NOT NULL,
    ordinal    integer NOT NULL,
    model      text NOT NULL REFERENCES embedding_models (model) ON DELETE CASCADE,
    embedding  vector NOT NULL,
    PRIMARY KEY (model, video_id, ordinal),
    FOREIGN KEY (video_id, ordinal) REFERENCES segments (video_id, ordinal) ON DELETE CASCADE
);
CREATE INDEX segment_vectors_video ON segment_vectors (video_id);
