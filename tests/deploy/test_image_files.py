"""The Dockerfile, .dockerignore and docker-compose.yml, checked for structure (there is no Docker
engine in CI): a multi-stage build whose final stage has no build tools and runs as a numeric
user, the hash-checked lock installed, and a compose file consistent with `make run`."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.local import run as local_run
from deploy.local import stack
from tests.deploy.chart_support import ROOT, known_env_names

DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
OVERRIDE = re.compile(r"\$\{(\w+):-([^}]*)\}")  # ${VAR:-default}, as compose interpolates it
COMPOSE: dict[str, Any] = yaml.safe_load(OVERRIDE.sub(lambda m: m.group(2), COMPOSE_TEXT))
SCRIPTS: dict[str, str] = tomllib.loads(
    (ROOT / "pyproject.toml").read_text())["project"]["scripts"]
BUILD_TOOLS = ("build-essential", "gcc", "g++", "clang", "make", "cmake", "python3-dev",
               "libc6-dev", "rustc", "cargo")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instr in instructions(text):
        if instr[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instr)
    return result


def test_the_dockerfile_is_multi_stage_from_a_pinned_slim_python() -> None:
    args = {m[0]: m[1] for m in re.findall(r"^ARG (\w+)=(\S+)", DOCKERFILE, re.M)}
    all_stages = stages(DOCKERFILE)
    assert len(all_stages) >= 2
    earlier: set[str] = set()
    for stage in all_stages:
        image = stage[0][1].split()[0]
        earlier.add(stage[0][1].split()[-1])
        if image in earlier:  # built on an earlier stage of this file
            continue
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", image), image


def test_the_final_stage_has_no_build_tools_and_a_numeric_user() -> None:
    final = stages(DOCKERFILE)[-1]
    text = " ".join(args for _, args in final)
    for tool in BUILD_TOOLS:
        assert not re.search(rf"(^|\s){re.escape(tool)}(\s|$)", text), tool
    assert not any(word == "RUN" and "apt-get install" in args for word, args in final)
    users = [args for word, args in final if word == "USER"]
    assert users and re.fullmatch(r"\d+(:\d+)?", users[-1]), users
    assert int(users[-1].split(":")[0]) != 0
    assert any(word == "COPY" and "--from=build" in args for word, args in final)
    assert [word for word, _ in final].index("USER") > max(
        i for i, (word, _) in enumerate(final) if word in ("RUN", "COPY"))


def test_the_lock_file_is_installed_with_hashes_then_the_project() -> None:
    build = stages(DOCKERFILE)[0]
    runs = [args for word, args in build if word == "RUN"]
    assert any("uv pip sync" in r and "--require-hashes" in r and "requirements-runtime.lock" in r
               for r in runs)
    assert any(re.search(r"uv pip install .*--no-deps \.(\s|$)", r) for r in runs)
    uv = re.search(r"^ARG UV_VERSION=(\S+)", DOCKERFILE, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert uv and f"UV_VERSION := {uv.group(1)}" in makefile, "same uv as `make venv`"


def _pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.M))


def test_the_runtime_lock_pins_what_the_dev_lock_pins_without_the_dev_tools() -> None:
    runtime, dev = _pins("requirements-runtime.lock"), _pins("requirements.lock")
    assert runtime
    assert {name: dev.get(name) for name in runtime} == runtime, "re-run `make lock`"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dev_only = {re.split(r"[<>=\[ ]", req)[0].lower()
                for req in project["optional-dependencies"]["dev"]}
    assert dev_only and not dev_only & {name.lower() for name in runtime}
    for req in project["dependencies"]:
        assert re.split(r"[<>=\[ ]", req)[0].lower() in {n.lower() for n in runtime}, req


def test_the_runtime_image_is_the_default_target_and_nothing_else_is_built() -> None:
    names = [stage[0][1].split()[-1] for stage in stages(DOCKERFILE)]
    assert names == ["build", "runtime"]  # a plain `docker build` builds no dev stage
    final = stages(DOCKERFILE)[-1]
    assert any(word == "COPY" and args.startswith("--from=build ") for word, args in final)
    sink = COMPOSE["services"]["smtp-sink"]
    assert sink["build"]["dockerfile"] == "deploy/smtp-sink.Dockerfile"
    pinned = re.search(r"^ARG AIOSMTPD_VERSION=(\S+)", (ROOT / sink["build"]["dockerfile"])
                       .read_text(), re.M)
    assert pinned and pinned.group(1) == _pins("requirements.lock")["aiosmtpd"]


def test_the_image_builds_anywhere() -> None:
    assert not DOCKERFILE.startswith("# syntax="), "a remote BuildKit frontend"
    words = [word for word, _ in instructions(DOCKERFILE)]
    args = {a.split("=")[0] for word, a in instructions(DOCKERFILE) if word == "ARG"}
    assert {"BASE_IMAGE", "INDEX_URL", "CA_CERT", "VERSION", "REVISION", "SOURCE"} <= args
    runs = " ".join(a for word, a in instructions(DOCKERFILE) if word == "RUN")
    assert "python3 -m venv" in runs and not re.search(r"python3? -m pip install", runs)
    labels = " ".join(a for word, a in stages(DOCKERFILE)[-1] if word == "LABEL")
    for key in ("version", "revision", "source"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert words.count("FROM") == 2


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_console_script_resolves(script: str) -> None:
    module, _, func = SCRIPTS[script].partition(":")
    assert callable(getattr(importlib.import_module(module), func))


def test_dockerignore_keeps_what_the_dockerfile_copies_and_nothing_local() -> None:
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        verdict = False
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.removeprefix("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                verdict = not negate
        return verdict

    copied = [src for word, args in instructions(DOCKERFILE) if word == "COPY"
              and "--from" not in args for src in args.split()[:-1]]
    assert copied
    for src in copied:
        assert not ignored(src.rstrip("/").removeprefix("./")), src
    for local in (".venv", ".local", ".git", "tests", "services/x/__pycache__"):
        assert ignored(local), local


def _compose_env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in COMPOSE["services"][service].get("environment", {}).items()}


def test_compose_env_vars_are_settings_the_services_read() -> None:
    known = known_env_names() | {"PYTHONUNBUFFERED"}
    for name in ("setup", "ingest", "scoring", "orchestrator", "dispatch"):
        unknown = set(_compose_env(name)) - known
        assert not unknown, f"{name}: {unknown}"


def test_compose_matches_make_run() -> None:
    services = COMPOSE["services"]
    # the same services, each started by its console script with the same subcommand
    for name, cmd in local_run.SERVICES.items():
        if name == "smtp-sink":
            assert services[name]["command"][:3] == ["python", "-m", "aiosmtpd"]
            continue
        module = cmd[2]  # [python, -m, services.<name>, subcommand, ...]
        script = next(s for s, target in SCRIPTS.items()
                      if target.startswith(module + ".__main__:"))
        assert services[name]["command"][:2] == [script, cmd[3]]

    def published(service: str) -> set[int]:
        return {int(p.split(":")[-1]) for p in services[service].get("ports", [])}

    assert published("ingest") == {8080}
    assert published("orchestrator") == {8081}
    assert published("dispatch") == {8082}
    assert published("smtp-sink") == {1025}
    assert published("kafka") == {9092}
    assert {int(p.split(":")[1]) for p in services["postgres"]["ports"]} == {55432}
    # the ports the services listen on are the ones published
    assert _compose_env("ingest")["NURTURE_INGEST_PORT"] == "8080"
    assert _compose_env("orchestrator")["NURTURE_ORCHESTRATOR_PORT"] == "8081"
    assert _compose_env("dispatch")["NURTURE_DISPATCH_PORT"] == "8082"
    # the same local credentials as deploy/local/run.py
    keys = _compose_env("ingest")["NURTURE_INGEST_API_KEYS"]
    assert hashlib.sha256(local_run.DEV_KEY.encode()).hexdigest() in keys
    assert _compose_env("orchestrator")["NURTURE_ORCHESTRATOR_API_TOKEN"] == local_run.DEV_TOKEN
    assert (_compose_env("orchestrator")["NURTURE_ORCHESTRATOR_ADMIN_TOKEN"]
            == local_run.DEV_ADMIN_TOKEN)
    for name in ("ingest", "dispatch"):
        assert _compose_env(name)["NURTURE_TRACKING_SECRET"] == local_run.DEV_TRACKING_SECRET


def test_compose_sets_every_variable_make_run_sets() -> None:
    source = Path(local_run.__file__).read_text()
    defaults = set(re.findall(r'env\.setdefault\("(\w+)"', source))
    defaults |= set(re.findall(r'env\["(\w+)"\] = ', source))
    assert defaults
    everywhere: set[str] = set()
    for name in ("ingest", "scoring", "orchestrator", "dispatch"):
        everywhere |= set(_compose_env(name))
    assert defaults <= everywhere, defaults - everywhere


def test_compose_kafka_is_kraft_of_the_version_make_run_uses() -> None:
    kafka = COMPOSE["services"]["kafka"]
    pom = (Path(stack.__file__).parent / "pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert version and kafka["image"] == f"apache/kafka:{version.group(1)}"
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_compose_keeps_the_brokers_data_on_its_volume() -> None:
    kafka = COMPOSE["services"]["kafka"]
    mounted = {v.split(":")[1] for v in kafka["volumes"]}
    assert kafka["environment"]["KAFKA_LOG_DIRS"] in mounted
    assert "kafka-data" in COMPOSE["volumes"]


def test_compose_images_and_host_ports_are_overridable_as_env_example_says() -> None:
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    overrides = dict(OVERRIDE.findall(COMPOSE_TEXT))
    assert overrides == example  # every override documented, with the same default
    raw = yaml.safe_load(COMPOSE_TEXT)["services"]  # not interpolated
    for name, service in raw.items():
        assert service["image"].startswith("${"), f"{name}: image {service['image']} fixed"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:${"), f"{name}: host port {port} fixed"
