#!/usr/bin/env bash
# npm run local:down — stops LocalStack and drops its state.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
docker compose -f "$here/docker-compose.yml" down --volumes
