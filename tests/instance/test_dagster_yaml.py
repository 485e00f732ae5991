"""DAGSTER_HOME/dagster.yaml belongs to the user: `chaffee up` sets the keys the project owns and
keeps the user's keys, comments and changed defaults."""

from __future__ import annotations

import stat

import pytest
import yaml

from chaffee_assets.instance.dagster_yaml import merge_dagster_yaml
from chaffee_assets.instance.setup import write_dagster_yaml
from chaffee_assets.lib.errors import ChaffeeError


def test_a_new_instance_gets_monitoring_retries_and_the_project_storage(settings):
    path = write_dagster_yaml(settings, "postgresql://u:p@/dagster?host=/tmp")
    cfg = yaml.safe_load(path.read_text())
    assert cfg["event_log_storage"]["class"] == "PooledPostgresEventLogStorage"
    assert cfg["run_storage"]["config"]["postgres_url"].startswith("postgresql+psycopg2://")
    assert cfg["concurrency"]["runs"]["max_concurrent_runs"] == settings.download_workers
    assert cfg["run_monitoring"]["enabled"] and cfg["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
    assert cfg["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}
    assert cfg["run_launcher"] == {"module": "chaffee_assets.instance.launcher", "class": "PatientRunLauncher"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it may hold a database password
    assert stat.S_IMODE(settings.dagster_home.stat().st_mode) & 0o066 == 0  # nobody else reads or writes


def test_a_users_keys_survive_a_second_chaffee_up(settings):
    path = write_dagster_yaml(settings, "postgresql://u@/dagster?host=/tmp")
    text = path.read_text()
    text = text.replace("max_retries: 2", "max_retries: 5")  # a default changed
    ours = "run_launcher:\n  module: chaffee_assets.instance.launcher\n  class: PatientRunLauncher\n"
    assert ours in text
    text = text.replace(ours, (  # the launcher swapped for another, as the file's comment suggests
        "# my launcher\nrun_launcher:\n  module: dagster_docker\n  class: DockerRunLauncher\n"
        "  config:\n    network: talks\n"
    ))
    path.write_text(text)
    again = settings.model_copy(update={"download_workers": 7})
    write_dagster_yaml(again, "postgresql://u@/dagster2?host=/tmp")
    out = path.read_text()
    cfg = yaml.safe_load(out)
    assert cfg["run_launcher"]["class"] == "DockerRunLauncher" and "# my launcher" in out
    assert cfg["run_retries"]["max_retries"] == 5
    assert cfg["concurrency"]["runs"]["max_concurrent_runs"] == 7  # owned: follows the settings
    assert cfg["run_storage"]["config"]["postgres_url"].endswith("/dagster2?host=/tmp")


def test_a_missing_default_is_added_and_an_unchanged_file_is_kept(settings):
    first = merge_dagster_yaml(None, settings, "postgresql://u@/d?host=/tmp")
    trimmed = yaml.safe_dump({k: v for k, v in yaml.safe_load(first).items() if k != "run_retries"})
    merged = yaml.safe_load(merge_dagster_yaml(trimmed, settings, "postgresql://u@/d?host=/tmp"))
    assert merged["run_retries"]["enabled"] is True
    assert merge_dagster_yaml(first, settings, "postgresql://u@/d?host=/tmp") == first


def test_a_second_run_launcher_key_is_named_with_its_line(settings):
    """Appending a launcher instead of replacing the file's one: a clear error, not ruamel's traceback."""
    path = write_dagster_yaml(settings, "postgresql://u@/dagster?host=/tmp")
    text = path.read_text() + "\nrun_launcher:\n  module: dagster_docker\n  class: DockerRunLauncher\n"
    line = text.count("\n") - 2  # the appended key's line
    with pytest.raises(ChaffeeError, match=rf"dagster.yaml cannot be read \(line {line}\): found duplicate key \"run_launcher\""):
        merge_dagster_yaml(text, settings, "postgresql://u@/dagster?host=/tmp")
