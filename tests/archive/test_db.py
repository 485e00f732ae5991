from chaffee_assets.archive import db


def test_migrations_apply_once_and_create_the_archive_tables(archive_url):
    # the fixture migrated already: a second run applies nothing
    assert db.migrate(archive_url) == []
    with db.connect(archive_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert {"videos", "segments", "segment_vectors", "embedding_models", "schema_migrations"} <= tables
    assert ext is not None
