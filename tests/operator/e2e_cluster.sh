#!/usr/bin/env bash
# `make e2e-cluster`: the operator's end-to-end suite against a real cluster (kind or k3d)
# instead of the emulator. Needs a container engine; not run on the CI machines.
#   CLUSTER_TOOL=kind|k3d (default kind), KEEP_CLUSTER=1 to keep it afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
TOOL=${CLUSTER_TOOL:-kind}
NAME=jubako-e2e
KUBECONFIG_FILE=$(mktemp)
cleanup() { [[ -n "${KEEP_CLUSTER:-}" ]] || case $TOOL in
  kind) kind delete cluster --name "$NAME" ;; k3d) k3d cluster delete "$NAME" ;; esac; }
trap cleanup EXIT
case $TOOL in
  kind) kind create cluster --name "$NAME" --kubeconfig "$KUBECONFIG_FILE" --wait 120s ;;
  k3d) k3d cluster create "$NAME" --kubeconfig-update-default=false --wait
       k3d kubeconfig get "$NAME" > "$KUBECONFIG_FILE" ;;
  *) echo "CLUSTER_TOOL must be kind or k3d" >&2; exit 2 ;;
esac
export KUBECONFIG=$KUBECONFIG_FILE
kubectl apply -f crds/bentodeployment.yaml -f crds/kopf-peering.yaml
kubectl wait --for=condition=Established crd/bentodeployments.serving.jubako.dev --timeout=60s
# The e2e tests read JUBAKO_E2E_KUBECONFIG: set, they talk to this cluster instead of KMock.
# Tests that count the emulator's requests (zero writes, passes, patch bodies) are left out:
# a real API server cannot be asked that.
JUBAKO_E2E_KUBECONFIG=$KUBECONFIG_FILE .venv/bin/pytest tests/operator/test_operator_e2e.py -q \
  -k "not no_op_resync and not restart_mid_way and not enabling_autoscaling and not lost_status" "$@"
