"""Build-time helper of the Dockerfile: yt-dlp in an image layer of its own.

    python ytdlp_layer.py VERSION STAGE

installs ``yt-dlp[default,deno]`` (``==VERSION``; empty: pyproject.toml's requirement, the
newest release the index has) into the venv /opt/ytmp3/venv, whose dependency layer was
built without yt-dlp and yt-dlp-ejs, and copies the files of exactly the distributions
that this install added or upgraded to STAGE (paths kept), for one ``COPY`` into the
final stages. Usually that is yt-dlp and yt-dlp-ejs; when a release needs a newer
dependency (certifi, deno, ...) that one comes along, over the older copy below it.

pip reports what it installed (``--report``); the files are those the installed
distributions' RECORDs list.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path


def requirement(version: str) -> str:
    """``yt-dlp[default,deno]==VERSION``, or pyproject.toml's yt-dlp line."""
    if version:
        return f"yt-dlp[default,deno]=={version}"
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    return next(dep for dep in project["dependencies"] if dep.startswith("yt-dlp"))


def main(version: str, stage: Path) -> int:
    report = Path("/tmp/ytdlp-report.json")  # noqa: S108 - a build container's own /tmp
    pip = [sys.executable, "-m", "pip", "install", "--report", str(report)]
    subprocess.run([*pip, requirement(version)], check=True)
    installed = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
    importlib.invalidate_caches()
    for name in installed:
        dist = importlib.metadata.distribution(name)
        for file in dist.files or []:
            source = Path(os.path.normpath(dist.locate_file(file)))
            if source.is_file():
                target = stage / source.relative_to("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    print(f"ytdlp_layer: {', '.join(installed)} staged in {stage}")
    return 0


if __name__ == "__main__":  # run by the venv's own Python
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
