"""The code location: `dagster dev` / workspace.yaml load `defs` from here."""

from chaffee_assets.defs.build import build_definitions
from chaffee_assets.settings import get_settings

defs = build_definitions(get_settings())
