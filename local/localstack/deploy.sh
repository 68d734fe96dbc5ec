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
export AWS_ENDPOINT_URL="http://${host}:4566"
export AWS_ENDPOINT_URL_S3="http://s3.${host}:4566"
# LocalStack's default account is 000000000000 and it takes any credentials; nothing from ~/.aws
# may send this deployment to a real account.
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_DEFAULT_REGION="${AWS_REGION:-us-east-1}"

npx cdk bootstrap "aws://000000000000/${AWS_REGION}"
npx cdk deploy DStreamStack --require-approval never --outputs-file cdk.out/localstack-outputs.json "$@"
