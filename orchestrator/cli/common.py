"""What every subcommand shares: settings from the environment with the command line on top."""

from __future__ import annotations

import argparse

from orchestrator.core.settings import Settings


def settings_from(args: argparse.Namespace) -> Settings:
    """The environment's settings with the command line's --data-dir and --port on top."""
    overrides: dict[str, object] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    if getattr(args, "port", None):
        overrides["port"] = args.port
    return Settings(**overrides)  # type: ignore[arg-type]
