#!/usr/bin/env bash
# terraform init in the current stack directory, for `make plan` / `make deploy-region`.
# Where terraform runs but cannot download its providers (no network to the registry, no
# mirror holding the pinned version), say so in one line instead of terraform's raw error.
set -u
TERRAFORM="${1:-terraform}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if "$TERRAFORM" init -input=false -no-color >"$log" 2>&1; then
  exit 0
fi
if grep -qiE 'registry\.terraform\.io|Failed to query available provider packages|Failed to install provider|could not connect|no such host|provider registry' "$log"; then
  version="$(grep -oE 'hashicorp/aws versions matching "[^"]+"' "$log" | grep -oE '"[^"]+"' | tr -d '"')"
  echo "error: terraform cannot download the AWS provider${version:+ $version} here (no network to registry.terraform.io and no mirror holding it): plan and deploy need a machine that reaches the Terraform registry; 'make synth' and 'make checkov' work offline" >&2
else
  cat "$log" >&2
fi
exit 1
