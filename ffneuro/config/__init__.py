"""Run configuration: frozen dataclasses by section (no torch), presets as shipped TOML files."""

from ffneuro.config.run import RunConfig, parse_assignment, preset, preset_dict, preset_names, type_name
from ffneuro.config.sections import SECTIONS, ConfigError

__all__ = ["SECTIONS", "ConfigError", "RunConfig", "parse_assignment", "preset", "preset_dict", "preset_names",
           "type_name"]
