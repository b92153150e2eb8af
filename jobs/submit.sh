#!/usr/bin/env bash
# Submit a training job to a running Ray cluster.
#   RAY_ADDRESS=http://127.0.0.1:8265 MLFLOW_TRACKING_URI=http://mlflow:5000 \
#     jobs/submit.sh --config jobs/celeba64.yaml --data s3://bucket/celeba64/manifest.json
# The client needs the cluster's token: on the head, `ray get-auth-token` prints it; put it in
# ~/.ray/auth_token on the client (or export RAY_AUTH_TOKEN) and keep RAY_AUTH_MODE=token.
set -euo pipefail
: "${RAY_ADDRESS:?set RAY_ADDRESS to the cluster dashboard, e.g. http://127.0.0.1:8265}"
: "${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI to an MLflow server every node can reach}"
cd "$(dirname "$0")/.."
exec ray job submit --address "$RAY_ADDRESS" --working-dir . \
  --runtime-env-json "{\"env_vars\": {\"MLFLOW_TRACKING_URI\": \"$MLFLOW_TRACKING_URI\"}}" \
  -- python -m ali_dist.train "$@"
