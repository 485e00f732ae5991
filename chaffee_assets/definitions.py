"""The code location: `dagster dev`, the daemon and the run workers load `defs` from here.

This is its start-up: the patches of Dagster's internals are applied explicitly, then the settings
(the only reader of the environment) are wired into the definitions."""

from chaffee_assets.defs.build import build_definitions
from chaffee_assets.instance import dagster_internals
from chaffee_assets.instance.model_service import head_file
from chaffee_assets.instance.setup import archive_url
from chaffee_assets.settings import get_settings

dagster_internals.apply()
settings = get_settings()
defs = build_definitions(settings, archive_url(settings), str(head_file(settings)))
