"""Renders a kustomization without kustomize: the subset deploy/kubernetes uses (`resources`,
files or directories with their own kustomization; `namespace`; `images`; `patches` by path, as
strategic merges keyed by kind and name, lists of named items merged by name). Anything else in
a kustomization is an error, so that a feature this does not implement is never silently
dropped. `make lint` validates what it renders (scripts/check_manifests.py)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]
SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}


def render(folder: Path) -> list[Doc]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED_KEYS
    if unknown:
        raise ValueError(f"{folder}/kustomization.yaml: unsupported keys {sorted(unknown)}")
    docs: list[Doc] = []
    for entry in kustomization.get("resources", []):
        path = folder / entry
        if path.is_dir():
            docs.extend(render(path))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for patch in kustomization.get("patches", []):
        (patch_doc,) = [d for d in yaml.safe_load_all((folder / patch["path"]).read_text()) if d]
        target = _find(docs, patch_doc["kind"], patch_doc["metadata"]["name"])
        merged = merge(target, patch_doc)
        docs[docs.index(target)] = merged
    for image in kustomization.get("images", []):
        for container in _containers(docs):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    namespace = kustomization.get("namespace")
    if namespace:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = namespace
    return docs


def merge(base: Any, patch: Any) -> Any:
    """A strategic merge: maps merged key by key, lists of maps with a `name` merged by name,
    other lists and scalars replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in [*base, *patch])
    ):
        merged_list = copy.deepcopy(base)
        for item in patch:
            names = [existing["name"] for existing in merged_list]
            if item["name"] in names:
                index = names.index(item["name"])
                merged_list[index] = merge(merged_list[index], item)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _find(docs: list[Doc], kind: str, name: str) -> Doc:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise ValueError(f"a patch targets {kind}/{name}, which no resource defines")


def _containers(docs: list[Doc]) -> list[Doc]:
    found: list[Doc] = []
    for doc in docs:
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        found.extend(spec.get("containers", []))
        found.extend(spec.get("initContainers", []))
    return found


def write(docs: list[Doc], folder: Path) -> list[Path]:
    """One file per resource (kind-name.yaml), as validators and checkov read them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc in docs:
        path = folder / f"{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(path)
    return paths
