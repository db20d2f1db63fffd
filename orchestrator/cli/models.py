"""``facerec models …`` and ``facerec triton-env``: the model store and Triton's environment."""

from __future__ import annotations

import argparse
import sys

from orchestrator.cli.common import settings_from
from orchestrator.modelrepo.catalog import ARCFACE, DEFAULT_MODELS
from orchestrator.modelrepo.fetch import ModelStore, fetch_models
from orchestrator.modelrepo.records import describe
from orchestrator.runtime.triton_env import ensure_environment


def cmd_fetch(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    store = fetch_models(settings.models_dir, tarball=args.tarball)
    print(f"models ready in {store.root}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from orchestrator.modelrepo.importer import import_file
    from orchestrator.modelrepo.variants import Normalization

    settings = settings_from(args)
    store = fetch_models(settings.models_dir)
    version = import_file(store, args.path, Normalization.parse(args.normalize))
    print(f"imported {args.path} as arcface version {version}; switch to it with `facerec rollout {version}`")
    return 0


def cmd_import_pth(args: argparse.Namespace) -> int:
    from orchestrator.modelrepo import pth

    pth.require_torch()
    settings = settings_from(args)
    store = fetch_models(settings.models_dir)
    version = pth.import_checkpoint(store, args.path, args.arch)
    print(
        f"imported {args.path} (iresnet {args.arch}, input RGB (x/255 - 0.5)/0.5) as arcface version "
        f"{version}; switch to it with `facerec rollout {version}`"
    )
    return 0


def cmd_derive(args: argparse.Namespace) -> int:
    from orchestrator.modelrepo.importer import derive

    settings = settings_from(args)
    version = derive(fetch_models(settings.models_dir), args.kind)
    print(f"arcface version {version} is the {args.kind} build of version 1")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    store = ModelStore(settings_from(args).models_dir)
    if not store.is_complete():
        print("no models yet: run `facerec models fetch`", file=sys.stderr)
        return 1
    for spec in DEFAULT_MODELS:
        print(f"{spec.name}\tversions {', '.join(map(str, store.versions(spec.name)))}")
    # The embedder's versions as GET /v1/models describes them, one indented line each.
    described = describe(store.repository("cpu") / ARCFACE.name, store.derived_versions())
    for version, record in described.items():
        created = record.created_at.isoformat(timespec="seconds")
        print(f"\t{version}\t{record.source}\t{created}\t{record.origin or ''}".rstrip("\t"))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from orchestrator.modelrepo.tuning import ensure_tuned

    store = fetch_models(settings_from(args).models_dir)
    tuning, changed = ensure_tuned(store.root, args.seconds, force=not args.if_needed, progress=print)
    if args.if_needed:
        return 0
    print(f"{'model':<16}{'level':<10}{'instances':>10}{'threads':>9}{'ms an item':>12}")
    for name, chosen in tuning.models.items():
        print(
            f"{name:<16}{chosen.graph_optimization:<10}{chosen.instances:>10}"
            f"{chosen.intra_op_threads:>9}{chosen.ms_per_item:>12.2f}"
        )
    print(
        f"written to {', '.join(changed) or 'no config (unchanged)'}; a running Triton takes it at its "
        "next start or model load"
    )
    return 0


def cmd_triton_env(args: argparse.Namespace) -> int:
    env = ensure_environment(settings_from(args).triton_env_dir)
    print(f"Triton environment ready: {env.tritonserver}")
    return 0
