#!/bin/sh
# An operator under test whose every status write the API server refuses: each second it sets a
# condition with an empty reason on every Echo, as echo-operator-rs does, which the Echo CRD's
# schema (that of metav1.Condition: reason at least 1 character) answers with 422. It creates no
# Deployment. Usage: refused-status-operator.sh KUBECTL (the kubeconfig comes in $KUBECONFIG).
kubectl=$1
status='{"status":{"conditions":[{"type":"Ready","status":"True","reason":"","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}'
while :; do
  for echo in $("$kubectl" get echoes -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name} {end}'); do
    "$kubectl" patch echo -n "${echo%/*}" "${echo#*/}" --subresource=status --type=merge -p "$status" 2>/dev/null
  done
  sleep 1
done
