"""Shared fixtures: a real embedded Postgres for the session, a fresh migrated database per test,
the real speech the project ships (chaffee_assets/testing/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chaffee_assets.lib.signals import default_signals

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# A suite started in the background by a shell without job control (`nohup make test &`) inherits
# SIGINT ignored, and Dagster then ignores SIGTERM too (chaffee_assets/lib/signals.py): an in-process
# run's `tail -F` log mirrors could not be stopped, and the run failed in its log capture's clean-up.
default_signals()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    from chaffee_assets.testing import fixtures_dir

    return fixtures_dir()


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """The model cache `make setup` assembled the packaged models in (the MODEL_CACHE setting)."""
    from chaffee_assets.settings import Settings

    return Settings().model_cache_dir


@pytest.fixture(scope="session")
def runtime(model_cache):
    """Models on the CPU, as every test runs them."""
    from chaffee_assets.lib.models.runtime import ModelRuntime

    return ModelRuntime.resolve("cpu", model_cache)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """One embedded Postgres (with pgvector) for the whole test session."""
    from chaffee_assets.instance import embedded_pg

    data_dir = tmp_path_factory.mktemp("pgdata")
    info = embedded_pg.start(data_dir)
    yield info
    embedded_pg.stop(data_dir)


@pytest.fixture
def archive_url(pg_server) -> str:
    """A fresh, migrated archive database for one test."""
    from tests.helpers.instances import new_database

    return new_database(pg_server)


@pytest.fixture
def settings(tmp_path, archive_url):
    from tests.helpers.instances import make_settings

    return make_settings(tmp_path, archive_url)


@pytest.fixture
def instance(pg_server, settings):
    from tests.helpers.instances import dagster_instance

    with dagster_instance(pg_server, settings) as inst:
        yield inst


@pytest.fixture
def demo_channel(tmp_path, fixtures_dir):
    from tests.helpers.instances import served_demo_channel

    with served_demo_channel(tmp_path / "channel", fixtures_dir) as channel:
        yield channel


@pytest.fixture(scope="session")
def model_service(tmp_path_factory, model_cache):
    """One real model service for the session: a Ray head on 127.0.0.1 and the Serve application
    with the packaged models on the CPU, warm (what `chaffee up` starts). Yields its address; the
    tests' settings reach it as RAY_ADDRESS."""
    from chaffee_assets.instance import model_service as ms
    from chaffee_assets.settings import Settings

    state = tmp_path_factory.mktemp("service")
    settings = Settings(state_dir=state, device="cpu", whisper_model="tiny.en", embedding_model="minilm",
                        model_cache=model_cache, batch_size=16)
    ms.start_head(settings)
    try:
        ms.deploy(settings)
        yield ms.service_address(settings)
    finally:
        ms.stop_head(settings)


@pytest.fixture
def service_settings(settings, model_service):
    """`settings` with the session's model service."""
    return settings.model_copy(update={"ray_address": model_service})
