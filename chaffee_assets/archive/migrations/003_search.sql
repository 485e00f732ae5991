-- Search filters by speaker case-insensitively (`lower(speaker) = lower($1)`); when the filter is
-- selective the exact path reads a speaker's segments through this index.
CREATE INDEX segments_speaker_lower ON segments (lower(speaker));
