"""`make lint`'s check of deploy/kubernetes: renders the base and each overlay with
scripts/kustomize_lite.py (no kustomize needed), validates every rendered resource against the
Kubernetes schemas (kubernetes-validate, strict: unknown fields are errors) and scans it with
checkov (its findings fixed, or skipped in the manifest with a reason). The base is validated;
the overlays, what is deployed, are validated and scanned (the base alone has no namespace, by
design, which checkov's CKV_K8S_21 rightly flags). Runs in .venv-lint."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run as a script, from .venv-lint

from scripts.kustomize_lite import render, write  # noqa: E402

KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"
"""The oldest version whose schemas the manifests must satisfy (gRPC probes are GA since 1.27,
the PDB's unhealthyPodEvictionPolicy since 1.31 beta, on by default since 1.27)."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubernetes-version", default=KUBERNETES_VERSION)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    targets = [KUBERNETES / "base", *sorted((KUBERNETES / "overlays").iterdir())]
    failed = False
    with tempfile.TemporaryDirectory(prefix="switchboard-k8s-") as tmp:
        for target in targets:
            name = target.relative_to(KUBERNETES)
            out = Path(tmp) / str(name).replace("/", "-")
            paths = write(render(target), out)
            print(f"== {name}: {len(paths)} resources rendered")
            validate = subprocess.run(
                [str(bin_dir / "kubernetes-validate"), "--strict",
                 "--kubernetes-version", args.kubernetes_version, *map(str, paths)],
                check=False,
            )  # fmt: skip
            if target.name == "base":  # it has no namespace by design: the overlays give one
                failed = failed or validate.returncode != 0
                continue
            scan = subprocess.run(
                [str(bin_dir / "checkov"), "--quiet", "--compact", "--skip-download",
                 "--framework", "kubernetes", "--directory", str(out)],
                check=False,
            )  # fmt: skip
            failed = failed or validate.returncode != 0 or scan.returncode != 0
    if failed:
        print("deploy/kubernetes: schema validation or checkov failed (see above)", file=sys.stderr)
        return 1
    print("deploy/kubernetes: valid against the Kubernetes schemas, checkov clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
