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


def with_services(settings: Settings, args: argparse.Namespace) -> Settings:
    """``settings`` with the command line's --triton-url, --search-url and --redis-url on top."""
    if args.triton_url:
        settings.triton.url = args.triton_url
    if args.search_url:
        settings.search_urls = args.search_url
    if args.redis_url:
        settings.redis_url = args.redis_url
    return settings
