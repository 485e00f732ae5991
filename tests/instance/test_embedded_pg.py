"""The embedded server's memory follows the archive it holds (`embedded_pg.tune`)."""

from __future__ import annotations

import psycopg

from chaffee_assets.instance import embedded_pg

MB, GB = 1 << 20, 1 << 30


def test_settings_grow_with_the_archive_within_a_quarter_of_memory():
    small = embedded_pg.server_settings(10 * MB, 16 * GB)
    assert small["shared_buffers"] == "128MB"  # Postgres's default is the floor
    assert small["effective_cache_size"] == "8192MB" and small["random_page_cost"] == "1.1"
    big = embedded_pg.server_settings(2 * GB, 16 * GB)
    assert big["shared_buffers"] == "2560MB"  # the archive and a quarter more
    huge = embedded_pg.server_settings(40 * GB, 16 * GB)
    assert huge["shared_buffers"] == "4096MB" and huge["maintenance_work_mem"] == "4096MB"  # a quarter of memory


def test_tune_applies_what_changed_once(pg_server, archive_url):
    database = psycopg.conninfo.conninfo_to_dict(archive_url)["dbname"]
    first = embedded_pg.tune(pg_server, database, restart=False)
    second = embedded_pg.tune(pg_server, database, restart=False)
    assert second == {}  # nothing left to change: the settings are in force
    want = embedded_pg.server_settings(0, embedded_pg.machine_memory())
    with psycopg.connect(archive_url) as conn:
        assert conn.execute("SHOW random_page_cost").fetchone()[0] == "1.1"
        for name in ("effective_cache_size", "work_mem"):
            have = conn.execute("SELECT pg_size_bytes(current_setting(%s))", (name,)).fetchone()[0]
            assert have == int(want[name].removesuffix("MB")) * MB, name
    assert "shared_buffers" not in first  # an empty archive keeps the default: no restart needed
