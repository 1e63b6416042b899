"""Command-line tools the deploy and observability checks need, fetched once into .local/tools/.

- helm: built from the Go module proxy (`go install helm.sh/helm/v3/cmd/helm@<version>`).
- promtool and prometheus: from Debian's `prometheus` package, downloaded with `apt-get download`
  and unpacked with `dpkg -x` (nothing is installed system-wide).

Standard library only, so it runs before the virtualenv exists.

    python deploy/local/tools.py helm         # print the path of helm, building it if needed
    python deploy/local/tools.py promtool     # print the path of promtool, fetching it if needed
    python deploy/local/tools.py prometheus   # print the path of the prometheus server
    python deploy/local/tools.py all
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("NURTURE_TOOLS_DIR", ROOT / ".local" / "tools"))
HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
HELM_VERSION = "v3.19.0"
PROMETHEUS_DEB = "prometheus"


class ToolError(RuntimeError):
    """A tool could not be fetched or built; the message says what to install or set."""


def log(msg: str) -> None:
    print(f"[tools] {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr)[-4000:]
        raise ToolError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output}")


def helm() -> Path:
    """helm, built once from the Go module proxy into .local/tools/helm-<version>/helm."""
    target = TOOLS / f"helm-{HELM_VERSION}" / "helm"
    if target.exists():
        return target
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists()
                                else None)
    if go is None:
        raise ToolError("Go is needed to build helm (go install helm.sh/helm/v3/cmd/helm): "
                        "install Go 1.24+, or put helm on PATH as .local/tools/"
                        f"helm-{HELM_VERSION}/helm")
    log(f"building helm {HELM_VERSION} from the Go module proxy (once, a few minutes) ...")
    target.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOBIN=str(target.parent), CGO_ENABLED="0", GOFLAGS="-trimpath")
    _run([go, "install", f"{HELM_MODULE}@{HELM_VERSION}"], env=env)
    if not target.exists():
        raise ToolError(f"go install finished but {target} is missing")
    return target


def _prometheus_dir() -> Path:
    """Unpack Debian's prometheus package once; return the folder holding its binaries."""
    bindir = TOOLS / "prometheus" / "usr" / "bin"
    if (bindir / "promtool").exists() and (bindir / "prometheus").exists():
        return bindir
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise ToolError("apt-get and dpkg are needed to fetch Debian's prometheus package")
    log("fetching Debian's prometheus package (promtool, prometheus) ...")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(["apt-get", "download", PROMETHEUS_DEB], cwd=tmp,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0 and os.geteuid() == 0:
            # a fresh machine may have no package lists yet
            _run(["apt-get", "update", "-q"])
            proc = subprocess.run(["apt-get", "download", PROMETHEUS_DEB], cwd=tmp,
                                  capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ToolError(f"apt-get download {PROMETHEUS_DEB} failed:\n{proc.stderr[-2000:]}")
        debs = sorted(Path(tmp).glob("prometheus_*.deb"))
        if not debs:
            raise ToolError("apt-get download produced no prometheus_*.deb")
        shutil.rmtree(TOOLS / "prometheus", ignore_errors=True)
        (TOOLS / "prometheus").mkdir(parents=True)
        _run(["dpkg", "-x", str(debs[0]), str(TOOLS / "prometheus")])
    if not (bindir / "promtool").exists():
        raise ToolError(f"{debs[0].name} has no usr/bin/promtool")
    return bindir


def promtool() -> Path:
    return _prometheus_dir() / "promtool"


def prometheus() -> Path:
    return _prometheus_dir() / "prometheus"


TOOL_FUNCS = {"helm": helm, "promtool": promtool, "prometheus": prometheus}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tool", choices=[*TOOL_FUNCS, "all"])
    args = parser.parse_args(argv)
    names = list(TOOL_FUNCS) if args.tool == "all" else [args.tool]
    try:
        for name in names:
            print(TOOL_FUNCS[name]())
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
