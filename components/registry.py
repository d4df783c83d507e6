"""The model registry from the command line: what is registered, and which version is the champion.

    python -m components.registry list
    python -m components.registry show NAME
    python -m components.registry promote NAME VERSION [--force]
    python -m components.registry rollback NAME

It talks to the MLflow named by MLFLOW_TRACKING_URI, or to the local store `make run` uses.
Aliases are MLflow's (``champion`` is what deploy serves; ``challenger`` a version that did not
win); each version's tags carry its gate verdict, primary metric and lineage.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys

LINEAGE = ("model", "gate", "recipe_hash", "data_hash", "git_commit", "pipeline_run_id")


class RegistryError(RuntimeError):
    """A registry request that cannot be carried out; the message says why."""


def _client():
    from mlflow import MlflowClient

    from .settings import local_service_env, platform_home

    for key, value in local_service_env(platform_home()).items():
        os.environ.setdefault(key, value)
    return MlflowClient()


def _versions(client, name: str) -> list:
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    if not versions:
        raise RegistryError(f"no registered model named {name!r}; `list` shows the registered ones")
    return versions


def _metric(version) -> str:
    return next((f"{k[7:]} {float(v):.4g}" for k, v in version.tags.items() if k.startswith("metric.")), "-")


def list_models(client) -> list[str]:
    lines = []
    for model in client.search_registered_models():
        aliases = ", ".join(f"{alias} → v{v}" for alias, v in sorted(model.aliases.items())) or "no aliases"
        latest = max((int(v.version) for v in client.search_model_versions(f"name='{model.name}'")), default=0)
        lines.append(f"{model.name}: {latest} version(s); {aliases}")
    return lines or ["no registered models"]


def show(client, name: str) -> list[str]:
    versions = _versions(client, name)
    aliases = {str(v): a for a, v in client.get_registered_model(name).aliases.items()}
    lines = [f"{'version':>7}  {'alias':<10}  {'created':<16}  {'metric':<16}  lineage"]
    for v in versions:
        created = datetime.datetime.fromtimestamp(v.creation_timestamp / 1000).strftime("%Y-%m-%d %H:%M")
        lineage = "  ".join(f"{k}={v.tags[k][:12]}" for k in LINEAGE if v.tags.get(k))
        lines.append(f"{v.version:>7}  {aliases.get(str(v.version), ''):<10}  {created:<16}  {_metric(v):<16}  {lineage}")
    return lines


def make_champion(client, name: str, version: str) -> str:
    try:
        before = client.get_model_version_by_alias(name, "champion").version
    except Exception:  # no champion yet
        before = None
    client.set_registered_model_alias(name, "champion", version)
    client.set_model_version_tag(name, version, "alias", "champion")
    if before and before != version:
        client.set_model_version_tag(name, version, "previous_champion", before)
        client.set_model_version_tag(name, before, "alias", "former-champion")
    return f"{name}: champion is now version {version}" + (f" (was {before})" if before else "")


def promote(client, name: str, version: str, force: bool = False) -> str:
    found = {str(v.version): v for v in _versions(client, name)}
    if version not in found:
        raise RegistryError(f"{name} has no version {version}; it has {', '.join(found)}")
    gate = found[version].tags.get("gate")
    if gate != "passed" and not force:
        raise RegistryError(f"{name} version {version} did not pass its gate ({gate or 'no verdict'}); "
                            "use --force to promote it anyway")
    return make_champion(client, name, version)


def rollback(client, name: str) -> str:
    _versions(client, name)
    try:
        current = client.get_model_version_by_alias(name, "champion")
    except Exception:
        raise RegistryError(f"{name} has no champion to roll back from") from None
    previous = current.tags.get("previous_champion")
    if not previous:
        raise RegistryError(f"{name} version {current.version} is the first champion on record; "
                            "nothing to roll back to (`promote` picks a version by hand)")
    return make_champion(client, name, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.registry", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="registered models and their aliases")
    sub.add_parser("show", help="a model's versions: alias, metric, gate and lineage").add_argument("name")
    up = sub.add_parser("promote", help="make a version the champion")
    up.add_argument("name")
    up.add_argument("version")
    up.add_argument("--force", action="store_true", help="promote a version whose gate failed")
    sub.add_parser("rollback", help="give the champion alias back to the previous champion").add_argument("name")
    args = parser.parse_args(argv)
    client = _client()
    try:
        if args.command == "list":
            out = list_models(client)
        elif args.command == "show":
            out = show(client, args.name)
        elif args.command == "promote":
            out = [promote(client, args.name, args.version, args.force)]
        else:
            out = [rollback(client, args.name)]
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(out))
    if args.command in ("promote", "rollback"):
        print("a running model server keeps its version until deploy runs again (submit.py, or the pipeline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
