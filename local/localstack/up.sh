#!/usr/bin/env bash
# npm run local:up — starts LocalStack and waits until every service the stack uses is up.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
endpoint="${LOCALSTACK_ENDPOINT:-http://localhost:4566}"
wait_seconds="${LOCALSTACK_WAIT_SECONDS:-180}"
services="s3 sqs lambda iam cloudwatch logs events sts cloudformation ssm ecr kms"

if [[ -z "${LOCALSTACK_AUTH_TOKEN:-}" && -z "${LOCALSTACK_IMAGE:-}" ]]; then
  echo "localstack/localstack:latest needs LOCALSTACK_AUTH_TOKEN (free at https://app.localstack.cloud);" >&2
  echo "export it, or run an older image without one: LOCALSTACK_IMAGE=localstack/localstack:4.14.0 npm run local:up" >&2
  exit 1
fi

docker compose -f "$here/docker-compose.yml" up -d

# Prints the services that are not yet available (none: exit 0).
not_ready() {
  local body
  if ! body="$(curl -fsS --max-time 3 "$endpoint/_localstack/health" 2>/dev/null)"; then
    echo "its health endpoint"
    return 1
  fi
  printf '%s' "$body" | node -e '
    let body = "";
    process.stdin.on("data", (c) => (body += c)).on("end", () => {
      let states = {};
      try { states = JSON.parse(body).services ?? {}; } catch {}
      const missing = process.argv.slice(1).filter((s) => !["available", "running"].includes(states[s]));
      console.log(missing.join(" "));
      process.exit(missing.length ? 1 : 0);
    });' $services
}

deadline=$((SECONDS + wait_seconds))
until missing="$(not_ready)"; do
  if [[ -n "$(docker compose -f "$here/docker-compose.yml" ps --status exited -q)" ]]; then
    echo "the LocalStack container exited (a missing or invalid LOCALSTACK_AUTH_TOKEN does that):" >&2
    docker compose -f "$here/docker-compose.yml" logs --tail 40 >&2
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    echo "LocalStack at $endpoint is not ready after ${wait_seconds}s; waiting for: ${missing:-its health endpoint}" >&2
    docker compose -f "$here/docker-compose.yml" logs --tail 40 >&2
    exit 1
  fi
  sleep 2
done
echo "LocalStack is ready at $endpoint"
