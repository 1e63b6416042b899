"""Command-line tools the deploy and observability checks need, fetched once into .local/tools/.

- helm: built from the Go module proxy (`go install helm.sh/helm/v3/cmd/helm@<version>`).
- promtool and prometheus: from Debian's `prometheus` package, downloaded with `apt-get download`
  and unpacked with `dpkg -x` (nothing is installed system-wide).
- kube-apiserver: built from the Go module proxy (k8s.io/kubernetes at KUBE_VERSION, its staging
  modules pinned to the matching k8s.io/* release), version stamped; for the chart install test.
- etcd: from Debian's `etcd-server` package, unpacked like prometheus; the API server's storage.
- chromium: Debian's `chromium` package, installed with apt-get (as root; it needs its
  libraries), for the browser ingestion test.
- analytics-next, rudderstack: Segment's and RudderStack's browser libraries from the npm
  registry, at the versions and integrity locked in deploy/local/npm/ (`npm ci` into
  .local/tools/npm); the folder of each one's browser build.

Standard library only, so it runs before the virtualenv exists.

    python deploy/local/tools.py helm         # print the path of helm, building it if needed
    python deploy/local/tools.py promtool     # print the path of promtool, fetching it if needed
    python deploy/local/tools.py prometheus   # print the path of the prometheus server
    python deploy/local/tools.py kube-apiserver etcd
    python deploy/local/tools.py chromium analytics-next rudderstack
    python deploy/local/tools.py all

A build takes a lock in its folder: two callers at once (a background pre-build and a test) build
once, the second waits for the first.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("NURTURE_TOOLS_DIR", ROOT / ".local" / "tools"))
HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
HELM_VERSION = "v3.19.0"
PROMETHEUS_DEB = "prometheus"
# kube-apiserver for tests/deploy/integration/test_chart_install.py; the staging modules
# (k8s.io/api, apiserver, ...) are pinned to the v0.<minor>.<patch> release that matches it
KUBE_VERSION = "v1.34.4"
ETCD_DEB = "etcd-server"


class ToolError(RuntimeError):
    """A tool could not be fetched or built; the message says what to install or set."""


def log(msg: str) -> None:
    print(f"[tools] {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr)[-4000:]
        raise ToolError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output}")


def _go(purpose: str) -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists()
                                else None)
    if go is None:
        raise ToolError(f"Go 1.24+ is needed to build {purpose} from the Go module proxy: "
                        "install Go, or put a built binary where this script looks for it")
    return go


@contextlib.contextmanager
def _building(folder: Path) -> Iterator[None]:
    """Hold the folder's build lock: concurrent callers wait and then find the result."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def helm() -> Path:
    """helm, built once from the Go module proxy into .local/tools/helm-<version>/helm."""
    target = TOOLS / f"helm-{HELM_VERSION}" / "helm"
    if target.exists():
        return target
    go = _go(f"helm (or put it at {target})")
    with _building(target.parent):
        if target.exists():
            return target
        log(f"building helm {HELM_VERSION} from the Go module proxy (once, a few minutes) ...")
        env = dict(os.environ, GOBIN=str(target.parent), CGO_ENABLED="0", GOFLAGS="-trimpath")
        _run([go, "install", f"{HELM_MODULE}@{HELM_VERSION}"], env=env)
    if not target.exists():
        raise ToolError(f"go install finished but {target} is missing")
    return target


def _kube_go_mod(go: str) -> str:
    """go.mod for building kube-apiserver outside its repository: k8s.io/kubernetes replaces its
    staging modules with folders of its own repository, so each is replaced here by the
    published release of the same version."""
    info = subprocess.run([go, "mod", "download", "-json", f"k8s.io/kubernetes@{KUBE_VERSION}"],
                          capture_output=True, text=True, check=False)
    if info.returncode != 0:
        raise ToolError(f"go mod download k8s.io/kubernetes@{KUBE_VERSION} failed:\n"
                        f"{info.stdout[-2000:]}{info.stderr[-2000:]}")
    upstream = Path(json.loads(info.stdout)["GoMod"]).read_text()
    staging = re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", upstream, re.MULTILINE)
    go_line = re.search(r"^go [\d.]+$", upstream, re.MULTILINE)
    if not staging or go_line is None:
        raise ToolError(f"k8s.io/kubernetes@{KUBE_VERSION}'s go.mod has no staging replaces")
    release = "v0." + KUBE_VERSION.removeprefix("v1.")
    replaces = "".join(f"\t{m} => {m} {release}\n" for m in staging)
    return (f"module nurture.local/kube-apiserver\n\n{go_line.group(0)}\n\n"
            f"replace (\n{replaces})\n")


def _kube_apiserver_path() -> Path:
    return TOOLS / f"kube-apiserver-{KUBE_VERSION}" / "kube-apiserver"


def kube_apiserver_built() -> bool:
    return _kube_apiserver_path().exists()


def kube_apiserver() -> Path:
    """kube-apiserver at KUBE_VERSION, built once into .local/tools/kube-apiserver-<version>/."""
    target = _kube_apiserver_path()
    home = target.parent
    if target.exists():
        return target
    go = _go("kube-apiserver")
    with _building(home):
        if target.exists():
            return target
        log(f"building kube-apiserver {KUBE_VERSION} from the Go module proxy "
            "(once, about 5 minutes on 2 cores) ...")
        src = home / "src"
        src.mkdir(exist_ok=True)
        (src / "go.mod").write_text(_kube_go_mod(go))
        (src / "go.sum").unlink(missing_ok=True)
        env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-trimpath -mod=mod")
        _run([go, "get", f"k8s.io/kubernetes/cmd/kube-apiserver@{KUBE_VERSION}"], cwd=src,
             env=env)
        major, minor = KUBE_VERSION.removeprefix("v").split(".")[:2]
        stamp = " ".join(f"-X k8s.io/component-base/version.{name}={value}" for name, value in (
            ("gitVersion", KUBE_VERSION), ("gitMajor", major), ("gitMinor", minor),
            ("gitTreeState", "clean")))
        partial = home / "kube-apiserver.partial"
        _run([go, "build", "-ldflags", f"-s -w {stamp}", "-o", str(partial),
              "k8s.io/kubernetes/cmd/kube-apiserver"], cwd=src, env=env)
        partial.rename(target)
    return target


def _debian_package(package: str, *binaries: str) -> Path:
    """Unpack one Debian package once into .local/tools/<package>; the folder of its binaries."""
    bindir = TOOLS / package / "usr" / "bin"
    if all((bindir / b).exists() for b in binaries):
        return bindir
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise ToolError(f"apt-get and dpkg are needed to fetch Debian's {package} package")
    with _building(TOOLS / f".{package}"):
        if all((bindir / b).exists() for b in binaries):
            return bindir
        log(f"fetching Debian's {package} package ({', '.join(binaries)}) ...")
        _unpack(package, TOOLS / package)
    missing = [b for b in binaries if not (bindir / b).exists()]
    if missing:
        raise ToolError(f"Debian's {package} package has no usr/bin/{missing[0]}")
    return bindir


def _unpack(package: str, into: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(["apt-get", "download", package], cwd=tmp,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0 and os.geteuid() == 0:
            # a fresh machine may have no package lists yet
            _run(["apt-get", "update", "-q"])
            proc = subprocess.run(["apt-get", "download", package], cwd=tmp,
                                  capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ToolError(f"apt-get download {package} failed:\n{proc.stderr[-2000:]}")
        debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
        if not debs:
            raise ToolError(f"apt-get download produced no {package}_*.deb")
        shutil.rmtree(into, ignore_errors=True)
        into.mkdir(parents=True)
        _run(["dpkg", "-x", str(debs[0]), str(into)])


def promtool() -> Path:
    return _debian_package(PROMETHEUS_DEB, "promtool", "prometheus") / "promtool"


def prometheus() -> Path:
    return _debian_package(PROMETHEUS_DEB, "promtool", "prometheus") / "prometheus"


def etcd() -> Path:
    return _debian_package(ETCD_DEB, "etcd") / "etcd"


def chromium() -> Path:
    """Debian's chromium, installed system-wide if missing (root only: it needs its libraries)."""
    found = shutil.which("chromium")
    if found:
        return Path(found)
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise ToolError("chromium is needed for the browser tests: apt-get install chromium")
    with _building(TOOLS / ".chromium"):
        if shutil.which("chromium") is None:
            log("installing Debian's chromium package ...")
            apt_get("install", "-y", "-q", "--no-install-recommends", "chromium")
    return Path(shutil.which("chromium") or "/usr/bin/chromium")


def apt_get(*args: str) -> None:
    """apt-get as root, waiting for another apt-get's lock (a background install); the package
    lists are fetched first when the machine has none yet."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    update = ["apt-get", *lock, "update", "-q"]
    if not any(Path("/var/lib/apt/lists").glob("*Packages*")):
        subprocess.run(update, env=env, capture_output=True, check=False)
    try:
        _run(["apt-get", *lock, *args], env=env)
    except ToolError:  # lists too old for the archive: fetch them and try once more
        subprocess.run(update, env=env, capture_output=True, check=False)
        _run(["apt-get", *lock, *args], env=env)


NPM_LOCKED = ROOT / "deploy" / "local" / "npm"


def _browser_library(*parts: str) -> Path:
    """The browser build (`parts` under node_modules) of a library locked in deploy/local/npm,
    installed with `npm ci` from that lock into .local/tools/npm (again when the lock
    changes)."""
    folder = TOOLS / "npm"
    build = folder.joinpath("node_modules", *parts)
    lock = (NPM_LOCKED / "package-lock.json").read_bytes()
    if (build / "index.js").exists() and (folder / "package-lock.json").exists() \
            and (folder / "package-lock.json").read_bytes() == lock:
        return build
    if shutil.which("npm") is None:
        raise ToolError("npm is needed to fetch the browser libraries: apt-get install npm")
    with _building(folder):
        if (build / "index.js").exists() and (folder / "package-lock.json").exists() \
                and (folder / "package-lock.json").read_bytes() == lock:
            return build  # another caller installed it while this one waited
        log("installing the browser libraries (npm ci) ...")
        for name in ("package.json", "package-lock.json"):
            shutil.copy(NPM_LOCKED / name, folder / name)
        _run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=folder)
    if not (build / "index.js").exists():
        raise ToolError(f"npm ci left no {build / 'index.js'}")
    return build


def analytics_next() -> Path:
    """The browser build (dist/umd) of @segment/analytics-next."""
    return _browser_library("@segment", "analytics-next", "dist", "umd")


def rudderstack() -> Path:
    """The browser build of @rudderstack/analytics-js with its plugins bundled (no CDN)."""
    return _browser_library("@rudderstack", "analytics-js", "dist", "npm", "modern", "bundled",
                            "umd")


TOOL_FUNCS = {"helm": helm, "promtool": promtool, "prometheus": prometheus,
              "kube-apiserver": kube_apiserver, "etcd": etcd, "chromium": chromium,
              "analytics-next": analytics_next, "rudderstack": rudderstack}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tool", nargs="+", choices=[*TOOL_FUNCS, "all"])
    args = parser.parse_args(argv)
    names = list(TOOL_FUNCS) if "all" in args.tool else args.tool
    try:
        for name in names:
            print(TOOL_FUNCS[name]())
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
