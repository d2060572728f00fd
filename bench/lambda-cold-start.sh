#!/usr/bin/env bash
# Lambda cold start (issue 4): each function's stripped release binary size, and its init
# time from process start to its first request to a local Lambda Runtime API emulator
# (bench/src/bin/cold-start.rs), next to a hello-world lambda_runtime binary in the same
# run, all built with the `lambda-release` profile. The functions get a full configuration;
# init makes no AWS call.
#
# Usage: bench/lambda-cold-start.sh [RUNS]   (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-50}"

cargo build --profile lambda-release -p envplane-api -p envplane-deployer -p envplane-task-events -p envplane-reaper -p envplane-bench --bins

config=(
    ENVPLANE_TABLE_NAME=envplane ENVPLANE_QUEUE_URL=https://sqs.us-east-1.amazonaws.com/123456789012/deployments
    ENVPLANE_KMS_KEY_ID=alias/envplane ENVPLANE_ARTIFACTS_BUCKET=envplane-artifacts ENVPLANE_LAUNCH_BUCKET=envplane-launch
    ENVPLANE_API_URL=https://api.envplane.example.com ENVPLANE_ECS_CLUSTER=envplane
    ENVPLANE_RUNNER_TASK_DEFINITION=envplane-runner ENVPLANE_SUBNETS=subnet-1,subnet-2
    ENVPLANE_SECURITY_GROUPS=sg-1 ENVPLANE_DEAD_LETTER_QUEUE_URL=https://sqs.us-east-1.amazonaws.com/123456789012/deployments-dlq
    AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x
)

echo "| binary | size (stripped) |"
echo "| --- | ---: |"
for binary in api deployer task-events reaper hello-lambda; do
    printf '| %s | %.1f MB |\n' "$binary" "$(stat -c %s "target/lambda-release/$binary" | awk '{print $1/1000000}')"
done
echo
./target/lambda-release/cold-start "$RUNS" target/lambda-release/hello-lambda
for binary in api deployer task-events reaper; do
    ./target/lambda-release/cold-start "$RUNS" "target/lambda-release/$binary" "${config[@]}"
done
