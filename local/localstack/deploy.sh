#!/usr/bin/env bash
# npm run local:deploy [-- -c pipeline=examples/grep.ts -c intervalSeconds=5] — bootstraps LocalStack
# and deploys DStreamStack to it with the plain CDK CLI: since 2.177 the CLI sends every AWS call to
# AWS_ENDPOINT_URL (S3 to AWS_ENDPOINT_URL_S3), so no cdklocal wrapper is needed. The stack's
# outputs go to cdk.out/localstack-outputs.json, where local:e2e finds the bucket.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

# *.localhost.localstack.cloud resolves to 127.0.0.1 in public DNS, so S3's virtual-hosted bucket
# addresses (<bucket>.s3.localhost.localstack.cloud) reach LocalStack too.
host="${LOCALSTACK_HOSTNAME:-localhost.localstack.cloud}"
# That needs public DNS (an offline laptop, or a router that blocks DNS rebinding, has none).
if ! node -e 'require("dns").lookup(process.argv[1], (e) => process.exit(e ? 1 : 0))' "s3.${host}"; then
  echo "s3.${host} does not resolve, so the CDK CLI cannot reach LocalStack's S3 by bucket address." >&2
  echo "Add to /etc/hosts: 127.0.0.1 ${host} s3.${host} cdk-hnb659fds-assets-000000000000-${AWS_REGION:-us-east-1}.s3.${host}" >&2
  exit 1
fi
export AWS_ENDPOINT_URL="http://${host}:4566"
export AWS_ENDPOINT_URL_S3="http://s3.${host}:4566"
# LocalStack's default account is 000000000000 and it takes any credentials; nothing from ~/.aws
# may send this deployment to a real account.
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_DEFAULT_REGION="${AWS_REGION:-us-east-1}"

npx cdk bootstrap "aws://000000000000/${AWS_REGION}"
npx cdk deploy DStreamStack --require-approval never --outputs-file cdk.out/localstack-outputs.json "$@"
# Some LocalStack images skip the custom resource that sets the bucket's notification.
npx tsx local/localstack/wire-notifications.ts cdk.out/localstack-outputs.json
