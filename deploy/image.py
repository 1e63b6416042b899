"""Build the Nurture image on a machine that reaches package registries but not Docker Hub.

    python -m deploy.image engine   # a Docker engine: the one DOCKER_HOST names, or the system's,
                                    # or Debian's docker.io started here (.local/docker)
    python -m deploy.image base     # a base image built from Debian's packages (mmdebstrap)
    python -m deploy.image build    # the image itself (`make image`), on BASE_IMAGE or that base

Each step prints what it does on stderr and the result on stdout. Nothing is pulled from a
container registry: the base is `mmdebstrap` (bookworm, python3, python3-venv, ca-certificates)
imported with `docker import`, and the build installs from PyPI (INDEX_URL for a mirror). CAs a
site added to this machine's trust store (`/usr/local/share/ca-certificates`, e.g. a
TLS-inspecting proxy's) are passed to the build as CA_CERT.

Installing docker.io and mmdebstrap needs root and Debian's package archive; on a machine that has
an engine already, set DOCKER_HOST (or run the system's dockerd) and only `build` is needed."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("NURTURE_DOCKER_DIR", ROOT / ".local" / "docker"))
SYSTEM_SOCKET = Path("/var/run/docker.sock")
SITE_CAS = Path("/usr/local/share/ca-certificates")
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_SUITE = "bookworm"


STARTED: list[str] = []
"""The DOCKER_HOSTs of the engines this process started."""
_DAEMONS: list[subprocess.Popen[bytes]] = []


class ImageError(RuntimeError):
    """The engine, the base or the build failed; the message says why and what to do."""


def log(msg: str) -> None:
    print(f"[image] {msg}", file=sys.stderr, flush=True)


def docker(host: str, *args: str, check: bool = True,
           **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": host}
    proc = subprocess.run(["docker", *args], env=env, capture_output=True, text=True,
                          check=False, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise ImageError(f"docker {' '.join(args[:2])} failed:\n{proc.stderr[-3000:]}")
    return proc


def answers(host: str) -> bool:
    return shutil.which("docker") is not None and docker(
        host, "info", "--format", "{{.ServerVersion}}", check=False, timeout=20).returncode == 0


def engine() -> str:
    """The DOCKER_HOST of a running engine, starting Debian's dockerd here if none runs."""
    for host in (os.environ.get("DOCKER_HOST", ""), f"unix://{STATE / 'docker.sock'}",
                 f"unix://{SYSTEM_SOCKET}"):
        if host and answers(host):
            return host
    return start_dockerd()


def apt_install(*packages: str) -> None:
    missing = [p for p in packages if shutil.which({"docker.io": "dockerd"}.get(p, p)) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise ImageError(f"{', '.join(missing)} missing and not root: install them "
                         f"(apt-get install {' '.join(missing)}) or set DOCKER_HOST")
    log(f"installing {', '.join(missing)} from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=600"]  # another install (tools.py chromium) may run
    for cmd in (["apt-get", *lock, "update", "-q"],
                ["apt-get", *lock, "install", "-y", "-q", "--no-install-recommends", *missing]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 and "install" in cmd:
            raise ImageError(f"apt-get install {' '.join(missing)} failed:\n{proc.stderr[-2000:]}")


def start_dockerd(timeout: float = 60.0) -> str:
    """Start dockerd with its state under .local/docker (no iptables, no bridge: containers use
    the host's network or none); its DOCKER_HOST."""
    apt_install("docker.io")
    STATE.mkdir(parents=True, exist_ok=True)
    socket = STATE / "docker.sock"
    host = f"unix://{socket}"
    exec_root = Path("/tmp") / f"nurture-docker-{hashlib.sha256(bytes(STATE)).hexdigest()[:8]}"
    log_file = STATE / "dockerd.log"
    log(f"starting dockerd (state {STATE}, log {log_file})")
    with log_file.open("ab") as out:
        _DAEMONS.append(subprocess.Popen(
            ["dockerd", "--data-root", str(STATE / "root"), "--exec-root", str(exec_root),
             "--host", host, "--pidfile", str(STATE / "dockerd.pid"), "--iptables=false",
             "--bridge=none"], stdout=out, stderr=out, start_new_session=True))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(host):
            STARTED.append(host)
            return host
        time.sleep(0.5)  # polling the engine's start, with a deadline
    tail = log_file.read_text(errors="replace")[-3000:]
    raise ImageError(f"dockerd did not answer within {timeout:.0f} s; its log ends:\n{tail}")


def stop_dockerd(timeout: float = 30.0) -> None:
    """Stop the dockerds this process started, and wait for them to end."""
    for daemon in _DAEMONS:
        daemon.terminate()
        try:
            daemon.wait(timeout)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    _DAEMONS.clear()
    STARTED.clear()


def base_image(host: str) -> str:
    """A base image from Debian's packages (built once, then found by its tag)."""
    key = hashlib.sha256(f"{BASE_SUITE} {' '.join(BASE_PACKAGES)}".encode()).hexdigest()[:12]
    tag = f"nurture-base:{BASE_SUITE}-{key}"
    if docker(host, "image", "inspect", tag, check=False).returncode == 0:
        return tag
    apt_install("mmdebstrap")
    log(f"building {tag} from Debian's packages ({', '.join(BASE_PACKAGES)})")
    strap = subprocess.Popen(
        ["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
         BASE_SUITE, "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    imported = docker(host, "import", "--change", 'CMD ["python3"]', "-", tag, check=False,
                      stdin=strap.stdout)
    _, err = strap.communicate()
    if strap.returncode != 0 or imported.returncode != 0:
        raise ImageError(f"the base image failed:\n{err.decode(errors='replace')[-2000:]}"
                         f"{imported.stderr[-2000:]}")
    return tag


def site_ca() -> str:
    """The certificates a site added to this machine's trust store (PEM text; '' if none)."""
    if not SITE_CAS.is_dir():
        return ""
    return "\n".join(p.read_text() for p in sorted(SITE_CAS.rglob("*.crt")))


def build(host: str, tag: str, *, base: str | None = None, revision: str = "unknown") -> str:
    """Build the runtime image as `tag`; `tag`."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return build_file(host, ROOT / "Dockerfile", ROOT, tag, base=base,
                      VERSION=version, REVISION=revision)


def build_file(host: str, dockerfile: Path, context: Path, tag: str, *, base: str | None = None,
               **more: str) -> str:
    """`docker build` of `dockerfile` as `tag`, with the build arguments it declares among
    BASE_IMAGE (`base`), INDEX_URL (the environment's), CA_CERT (`site_ca`) and `more`."""
    declared = set(re.findall(r"^ARG (\w+)", dockerfile.read_text(), re.M))
    values = {"BASE_IMAGE": base, "INDEX_URL": os.environ.get("INDEX_URL"), "CA_CERT": site_ca(),
              **more}
    args = ["build", "--network", "host", "--tag", tag, "--file", str(dockerfile)]
    for name, value in values.items():
        if value and name in declared:
            args += ["--build-arg", f"{name}={value}"]
    log(f"building {tag} ({dockerfile.name}) on {base or 'its default base'}")
    docker(host, *args, str(context), timeout=1800)
    return tag


def revision() -> str:
    proc = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.image", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("engine", "base", "build"))
    parser.add_argument("--tag", default=None, help="image tag (build; default nurture:VERSION)")
    args = parser.parse_args(argv)
    try:
        host = engine()
        if args.step == "engine":
            print(host)
            return 0
        base = os.environ.get("BASE_IMAGE") or base_image(host)
        if args.step == "base":
            print(base)
            return 0
        version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
        print(build(host, args.tag or f"nurture:{version}", base=base, revision=revision()))
    except ImageError as exc:
        print(f"image: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
