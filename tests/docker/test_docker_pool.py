"""Production on Docker, for real: the Dockerfile, the pool, prefect.yaml, a Docker worker.

The fixtures (conftest.py) build the stand-in base image, serve the wheels, start a Prefect
server and a Docker worker, create the pool from infrastructure/ and deploy prefect.yaml,
whose build step builds the project's Dockerfile. The tests then run flows through the
pool on media served from 127.0.0.1, and check what lands in a named volume.

Without a Docker engine these tests fail when ``CI`` is set and skip otherwise.
"""

from __future__ import annotations

import json
import re
import runpy
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun, Log
from prefect.deployments import run_deployment

from tests.support.docker_engine import (
    MEDIA_ENV,
    PROJECT_ROOT,
    clean_env,
    docker,
    read_volume_file,
    require,
    tail,
    volume_listing,
)
from tests.support.media_server import MediaServer, video_page_html

pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]

UID = 1000
IMAGE_SIZE_GOAL = 600_000_000
POOL_TEMPLATE = runpy.run_path(str(PROJECT_ROOT / "infrastructure/docker/pool_template.py"))


def run_through_pool(
    name: str, parameters: dict[str, object], variables: dict[str, object], worker
) -> FlowRun:
    flow_run = run_deployment(
        name, parameters=parameters, job_variables=variables, timeout=300, poll_interval=1
    )
    assert flow_run.state is not None
    assert flow_run.state.is_completed(), (
        f"{name} ended {flow_run.state.type.value}: {flow_run.state.message}\n"
        f"{flow_logs_text(flow_run)}\n{tail(worker.log)}"
    )
    return flow_run


def flow_logs(flow_run: FlowRun, wait_for: str | None = None, timeout: float = 30) -> list[Log]:
    """The run's logs as the Prefect server has them (waiting for ``wait_for`` to arrive)."""
    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id]))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(log_filter=log_filter, limit=200)
            if wait_for is None or any(wait_for in log.message for log in logs):
                return logs
            if time.monotonic() > deadline:
                return logs
            time.sleep(0.5)


def flow_logs_text(flow_run: FlowRun) -> str:
    logs = flow_logs(flow_run, timeout=0)
    return "--- flow run logs ---\n" + "\n".join(f"{log.name}: {log.message}" for log in logs)


def library_files(listing: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """The published entries: top-level files (``<key>.mp3`` and ``<key>.json``)."""
    return {path: meta for path, meta in listing.items() if "/" not in path and not meta["is_dir"]}


# -- the files agree (no engine needed) ------------------------------------------------------


def test_the_build_args_agree_between_dockerfile_prefect_yaml_and_compose():
    """Only build args differ between production and offline builds: all three know them."""
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    declared = set(
        re.findall(r"^ARG (BASE_IMAGE|PIP_[A-Z_]+|YTDLP_VERSION)", dockerfile, re.MULTILINE)
    )
    document = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    build = document["build"][0]["prefect_docker.deployments.steps.build_docker_image"]
    assert set(build["buildargs"]) == declared
    assert build["buildargs"]["BASE_IMAGE"] == "{{ $BASE_IMAGE }}"
    assert (build["pull"], build["rm"], build["target"]) == (False, True, "flows")
    compose = yaml.safe_load((PROJECT_ROOT / "infrastructure" / "compose.yml").read_text())
    for name in ("prefect-server", "worker", "ui"):
        assert set(compose["services"][name]["build"]["args"]) == declared, name


# -- the compose file ------------------------------------------------------------------------


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_the_compose_file_is_valid():
    """Static checks of the compose file as compose reads it (the stack itself runs in
    test_compose.py)."""
    command = compose_command()
    require(
        command is not None,
        "neither docker-compose nor `docker compose` is installed "
        "(infrastructure/docker/start-engine.sh installs docker-compose)",
    )
    assert command is not None
    result = subprocess.run(
        [*command, "-f", str(PROJECT_ROOT / "infrastructure" / "compose.yml"), "config"],
        capture_output=True, text=True, timeout=60, check=False, cwd=PROJECT_ROOT,
        env=clean_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {"secrets", "postgres", "prefect-server", "worker", "ui"}
    for name, service in services.items():
        assert name == "secrets" or "healthcheck" in service, f"{name} has no healthcheck"
        assert "no-new-privileges:true" in service["security_opt"], name
        secret = [
            key
            for key in service.get("environment", {})
            if ("PASSWORD" in key or "AUTH_STRING" in key) and not key.endswith("_FILE")
        ]
        assert not secret, f"{name}: secrets are files, not values in the compose file"
    for name in ("prefect-server", "worker", "ui"):
        assert services[name]["read_only"] is True, name
        assert services[name]["cap_drop"] == ["ALL"], name
    # Postgres is on the internal network only, and nothing but the server joins it.
    assert set(services["postgres"]["networks"]) == {"db"}
    assert config["networks"]["db"]["internal"] is True
    joined = {name for name, service in services.items() if "db" in service.get("networks", {})}
    assert joined == {"postgres", "prefect-server"}
    assert set(services["worker"]["networks"]) == {"flows"}
    assert config["networks"]["flows"]["name"] == "ytmp3-flows"
    worker_mounts = [str(volume) for volume in services["worker"]["volumes"]]
    assert any("/var/run/docker.sock" in mount for mount in worker_mounts)
    ui_mounts = services["ui"]["volumes"]
    library = [m for m in ui_mounts if "ytmp3-library" in str(m)]
    assert library, ui_mounts
    assert all(m.get("read_only") if isinstance(m, dict) else m.endswith(":ro") for m in library)
    assert config["volumes"]["ytmp3-library"]["name"] == "ytmp3-library"
    # The worker gives the pool that volume and network; the pool's default is the same.
    assert POOL_TEMPLATE["PoolConfig"]().volumes == ("ytmp3-library:/data",)
    assert "--volume=ytmp3-library:/data" in services["worker"]["command"]
    assert "--network=ytmp3-flows" in services["worker"]["command"]


# -- the image -------------------------------------------------------------------------------


def test_the_image_is_under_the_size_goal(deployed):
    size = int(docker("image", "inspect", "-f", "{{.Size}}", deployed.image).strip())
    assert size < IMAGE_SIZE_GOAL, f"{deployed.image} is {size / 1e6:.0f} MB"


def test_yt_dlp_solves_js_with_deno_in_the_image_and_the_doctor_passes(deployed):
    """yt-dlp finds the image's Deno itself and runs the installed yt-dlp-ejs solver with
    it (flows/jsc.py, through yt-dlp's challenge director), with no network at all."""
    report = docker("run", "--rm", "--network", "none", deployed.image,
                    "python", "-m", "flows.doctor", "--no-prefect")  # fmt: skip
    lines = report.splitlines()
    assert lines[-1] == "ytmp3 can convert", report
    (js,) = [line for line in lines if " JS runtime " in line]
    assert re.match(r"ok +JS runtime +deno 2\.\S+ \(/opt/ytmp3/venv/bin/deno\): solved", js), js
    assert any(re.match(r"ok +yt-dlp-ejs +\d", line) for line in lines), report
    assert any("ok    cache dir    /var/cache/ytmp3: writable" in line for line in lines)
    script = (
        "import yt_dlp_ejs, yt_dlp.version; print(yt_dlp_ejs.version, yt_dlp.version.__version__)"
    )
    ejs, ytdlp = docker("run", "--rm", "--network", "none", deployed.image,
                        "python", "-c", script).split()  # fmt: skip
    assert ejs and ytdlp


def test_the_image_checks_its_own_health_and_keeps_yt_dlp_in_a_layer_of_its_own(deployed):
    health = json.loads(docker("image", "inspect", "-f", "{{json .Config.Healthcheck}}",
                               deployed.image))  # fmt: skip
    assert health["Test"] == ["CMD", "python", "-m", "flows.doctor"]
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    stage = dockerfile[dockerfile.index("FROM build AS ytdlp") :]
    assert "ARG YTDLP_VERSION" in stage.split("FROM ", 2)[1]
    assert dockerfile.count("COPY --from=ytdlp /stage-ytdlp/ /") == 2  # flows and ui
    layers = docker("history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}",
                    deployed.image)  # fmt: skip
    copies = [line for line in layers.splitlines() if "COPY dir:" in line]
    assert len(copies) >= 3, layers  # the code, yt-dlp, the dependencies


def test_the_images_ffmpeg_handles_every_kind_of_test_media(
    deployed, media_server: MediaServer, media_dir: Path, tmp_path: Path
):
    """The image's own (minimal) ffmpeg, driven by the project's media steps, on each kind
    of media the tests generate, plus a WebP cover (converted to JPEG for the tags)."""
    webp = tmp_path / "poster.webp"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(media_dir / "poster.jpg"), str(webp)],
        check=True, timeout=60,
    )  # fmt: skip
    media_server.alias("/webp/poster.webp", webp)
    media_server.alias("/webp/clip.webm", media_dir / "clip.webm")
    cases = {
        media_server.url("page.html"): "192",  # html5 page: mp4 (AAC) and a JPEG poster
        media_server.add_page("/webp/page.html", video_page_html("clip.webm", "poster.webp")): "V2",
        media_server.url("clip.m4a"): "128",
        media_server.url("clip.mp3"): "192",  # MP3 at 128k: re-encoded
        media_server.url("clip-192k.mp3"): "192",  # MP3 at 192k: stream copy
        media_server.url("hls/clip.m3u8"): "192",
    }
    script = """
import json, sys, tempfile
from pathlib import Path
from flows import media
from flows.settings import get_settings

settings = get_settings()
out = {}
for url, quality in json.loads(sys.argv[1]).items():
    with tempfile.TemporaryDirectory() as tmp:
        info = media.probe(url, settings)
        fetched = media.download(info, Path(tmp), settings)
        stats = media.transcode(fetched.audio, Path(tmp) / "audio.mp3", quality, settings)
        cover = fetched.thumbnail.read_bytes()[:3].hex() if fetched.thumbnail else None
        out[url] = dict(codec=stats.codec, kbps=stats.bitrate_kbps, seconds=stats.duration,
                        cover=cover)
print(json.dumps(out))
"""
    env = [arg for name, value in MEDIA_ENV.items() for arg in ("-e", f"{name}={value}")]
    output = docker(
        "run", "--rm", "--network", "host", *env, "-e", "YTMP3_DATA_DIR=/tmp/data",
        deployed.image, "python", "-c", script, json.dumps(cases), timeout=300,
    )  # fmt: skip
    results = json.loads(output.strip().splitlines()[-1])
    for url, quality in cases.items():
        result = results[url]
        assert result["codec"] == "mp3", (url, result)
        assert result["seconds"] and result["seconds"] > 4, (url, result)
        if quality.isdigit():
            assert abs(result["kbps"] - int(quality)) <= 8, (url, result)
    jpeg = "ffd8ff"
    assert results[media_server.url("page.html")]["cover"] == jpeg
    assert results[media_server.url("/webp/page.html")]["cover"] == jpeg  # WebP -> JPEG


# -- flows through the pool ------------------------------------------------------------------


@dataclass
class Converted:
    flow_run: FlowRun
    url: str
    container: dict[str, object]


@pytest.fixture(scope="module")
def converted(deployed, docker_worker, library_volume, media_server: MediaServer) -> Converted:
    """``convert/on-demand`` through the pool, its container kept for inspection; the run
    changes one setting, as a run may."""
    url = media_server.url("page.html")
    flow_run = run_through_pool(
        "convert/on-demand",
        {"url": url, "quality": "192"},
        {"auto_remove": False, "env": {"YTMP3_RETRIES": "1"}},
        docker_worker,
    )
    ids = docker("ps", "-aq", "--filter", f"label=io.prefect.flow-run-id={flow_run.id}").split()
    assert len(ids) == 1, f"expected one container for the flow run, found {ids}"
    container = json.loads(docker("inspect", ids[0]))[0]
    return Converted(flow_run=flow_run, url=url, container=container)


def test_convert_ran_in_a_container_as_a_non_root_user(converted: Converted, deployed):
    config, state = converted.container["Config"], converted.container["State"]
    assert config["Image"] == deployed.image
    assert config["User"] == f"{UID}:{UID}"
    assert state["ExitCode"] == 0
    host = converted.container["HostConfig"]
    assert host["NetworkMode"] == "host"  # localhost API URL: how it reached server and media
    # It converted in the locked-down container (test_hardening.py shows all of it).
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    mounts = {mount["Destination"]: mount for mount in converted.container["Mounts"]}
    assert mounts["/data"]["Type"] == "volume"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["YTMP3_DATA_DIR"] == "/data"  # the pool's env
    assert env["YTMP3_ALLOWED_HOSTS"] == MEDIA_ENV["YTMP3_ALLOWED_HOSTS"]
    assert env["YTMP3_RETRIES"] == "1"  # the run's own


def test_the_mp3_and_its_sidecar_land_in_the_volume_owned_by_uid_1000(
    converted: Converted, deployed, library_volume
):
    listing = volume_listing(deployed.image, library_volume)
    assert listing["."]["uid"] == UID
    files = library_files(listing)
    # The volume is shared by the module's runs: this run's page.html is generic.page-*.
    mp3s = [path for path in files if path.startswith("generic.page-") and path.endswith(".mp3")]
    assert len(mp3s) == 1, listing
    key = mp3s[0].removesuffix(".mp3")
    assert f"{key}.json" in files, listing
    for path in (f"{key}.mp3", f"{key}.json"):
        assert (files[path]["uid"], files[path]["gid"]) == (UID, UID), (path, files[path])
    assert files[f"{key}.mp3"]["size"] > 10_000
    sidecar = json.loads(read_volume_file(deployed.image, library_volume, f"{key}.json"))
    assert converted.url in (sidecar.get("source_url"), sidecar.get("requested_url")), sidecar
    assert not any(path.startswith(".tmp/") for path in listing), "a workspace was left behind"


def test_the_runs_logs_reached_the_prefect_server(converted: Converted):
    logs = flow_logs(converted.flow_run, wait_for="Finished in state Completed")
    messages = [log.message for log in logs]
    # Task runs exist only inside the flow process, so their logs came from the container.
    assert any(log.task_run_id is not None for log in logs), messages
    assert any("Finished in state Completed" in message for message in messages), messages
    # The worker handed it to Docker; inside the container, prefect.yaml's pull step ran.
    assert any("submitted to infrastructure" in message for message in messages), messages
    assert any("set_working_directory" in message for message in messages), messages


def test_cleanup_runs_through_the_pool(
    converted: Converted, deployed, docker_worker, library_volume
):
    before = library_files(volume_listing(deployed.image, library_volume))
    assert any(path.endswith(".mp3") for path in before)

    # The schedule's parameters: nothing is past its expiry yet, so everything stays.
    kept = run_through_pool("cleanup/every-5-minutes", {}, {}, docker_worker)
    assert library_files(volume_listing(deployed.image, library_volume)) == before
    assert any(
        "cleanup of /data" in log.message for log in flow_logs(kept, wait_for="cleanup of /data")
    )

    # An operator's override: older than ~1 s goes; the container's user may delete it.
    run_through_pool(
        "cleanup/every-5-minutes",
        {"max_age_hours": 0.0003, "force": True},
        {},
        docker_worker,
    )
    after = library_files(volume_listing(deployed.image, library_volume))
    assert not any(path.endswith((".mp3", ".json")) for path in after), after
