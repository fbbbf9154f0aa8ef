"""Run configuration: frozen dataclasses by section (no torch), presets as shipped TOML files."""

from ffneuro.config.run import RunConfig, preset, preset_dict, preset_names
from ffneuro.config.sections import ConfigError

__all__ = ["ConfigError", "RunConfig", "preset", "preset_dict", "preset_names"]
