#!/bin/sh
# Build-time helper of the Dockerfile (not used at run time):
#   venv.sh install EXTRA...   install pyproject.toml's dependencies and those extras (not
#                              the project itself) into the venv /opt/ytmp3/venv
#   venv.sh stage [--no-prefect-ui]
#                              copy that venv to /stage/opt/ytmp3/venv, the tree a final
#                              stage copies to /opt/ytmp3/venv: minus pip and setuptools
#                              (nothing imports them at run time), test suites and, with
#                              --no-prefect-ui, Prefect's UI bundles (only the Prefect server
#                              serves them); plus ytmp3.pth, which puts the source tree at
#                              /opt/ytmp3 on sys.path.
set -eu
venv=/opt/ytmp3/venv

case "${1:-}" in
install)
    shift
    python3 - "$@" >/tmp/requirements.txt <<'PY'
import sys
import tomllib

with open("pyproject.toml", "rb") as fh:
    project = tomllib.load(fh)["project"]
requirements = list(project["dependencies"])
for extra in sys.argv[1:]:
    requirements += project["optional-dependencies"][extra]
print("\n".join(requirements))
PY
    "$venv/bin/pip" install -r /tmp/requirements.txt
    ;;
stage)
    rm -rf /stage
    mkdir -p /stage/opt/ytmp3
    cp -a "$venv" /stage/opt/ytmp3/
    staged=/stage$venv
    site=$(echo "$staged"/lib/python3*/site-packages)
    "$staged/bin/python" -m pip uninstall --quiet --yes pip setuptools
    find "$site" -mindepth 2 -type d -name tests -prune -exec rm -rf {} +
    if [ "${2:-}" = --no-prefect-ui ]; then
        rm -rf "$site/prefect/server/ui" "$site/prefect/server/ui-v2"
    fi
    echo /opt/ytmp3 >"$site/ytmp3.pth"
    ;;
*)
    echo "usage: venv.sh install EXTRA... | stage [--no-prefect-ui]" >&2
    exit 2
    ;;
esac
