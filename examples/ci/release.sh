#!/bin/sh
# Build once, test the build, register it with its provenance and reports, and promote it.
#
# Plain POSIX sh; talks to Conveyor only through the `conveyor` CLI. Needs tar, python3 with
# pytest (for the app's unit tests and their JUnit report), and the conveyor CLI on PATH.
#
# Parameters (environment variables):
#   CONVEYOR_URL    the Conveyor server, e.g. https://conveyor.example.com
#   CONVEYOR_TOKEN  a token with artifacts:write (and access.deploy in PROMOTE_TO)
#   SERVICE         the service name in conveyor.yaml, e.g. web
#   VERSION         this build's SemVer version, e.g. 1.4.0
#   APP_DIR         the directory to ship; its contents become the root of the bundle
#   PROMOTE_TO      optional: an environment to promote the build to, then follow the promotion
#   SARIF           optional: a SARIF scan report of APP_DIR, attached under the name `sast`
#   WAIT            optional: seconds to follow the promotion (default 600)
#   OUT_DIR         optional: where the bundle and the reports are written (default ./dist)
#
# Exit status: 0 when the build is registered and the promotion (if any) succeeded or waits for
# approvals; non-zero when a step failed. Inside GitHub Actions or GitLab CI the CLI records
# the commit, branch, run URL and builder by itself; elsewhere this script asks git.
set -eu

: "${CONVEYOR_URL:?set CONVEYOR_URL to the Conveyor server}"
: "${CONVEYOR_TOKEN:?set CONVEYOR_TOKEN to a token with artifacts:write}"
: "${SERVICE:?set SERVICE to the service name in conveyor.yaml}"
: "${VERSION:?set VERSION to this build's version, e.g. 1.4.0}"
: "${APP_DIR:?set APP_DIR to the directory to ship}"
export CONVEYOR_URL CONVEYOR_TOKEN
PROMOTE_TO=${PROMOTE_TO:-}
SARIF=${SARIF:-}
WAIT=${WAIT:-600}
OUT_DIR=${OUT_DIR:-dist}

mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
BUNDLE="$OUT_DIR/$SERVICE-$VERSION.tar.gz"
JUNIT="$OUT_DIR/junit-unit.xml"
UNPACKED=$(mktemp -d)
trap 'rm -rf "$UNPACKED"' EXIT

echo "== build $SERVICE $VERSION (once)"
tar -czf "$BUNDLE" -C "$APP_DIR" .

echo "== unit tests, run on the unpacked bundle"
tar -xzf "$BUNDLE" -C "$UNPACKED"
(cd "$UNPACKED" && APP_DIR="$UNPACKED" python3 -m pytest -q -p no:cacheprovider --junitxml="$JUNIT")

echo "== register $SERVICE $VERSION with its reports"
set -- --junit "unit=$JUNIT"
if [ -n "$SARIF" ]; then
  set -- "$@" --sarif "sast=$SARIF"
fi
if [ -z "${GITHUB_ACTIONS:-}${GITLAB_CI:-}" ] && git -C "$APP_DIR" rev-parse HEAD >/dev/null 2>&1; then
  set -- "$@" --commit "$(git -C "$APP_DIR" rev-parse HEAD)" --builder "release.sh@$(uname -n)"
  branch=$(git -C "$APP_DIR" rev-parse --abbrev-ref HEAD)
  if [ "$branch" != "HEAD" ]; then
    set -- "$@" --branch "$branch"
  fi
fi
conveyor artifact register "$SERVICE" "$VERSION" --bundle "$BUNDLE" "$@"
conveyor artifact show "$SERVICE" "$VERSION"

if [ -n "$PROMOTE_TO" ]; then
  echo "== promote $SERVICE $VERSION to $PROMOTE_TO"
  # stops at success, or when the promotion waits for people (approvals); fails otherwise
  conveyor promote "$SERVICE" "$VERSION" --to "$PROMOTE_TO" --wait "$WAIT"
fi
