#!/usr/bin/env bash
# Builds the local control plane, chart and image tooling from Go modules into a cache outside the
# work tree, keyed by tool and version, and skips whatever is already there.
#
#   hack/tools/build.sh            build every missing tool, print the bin directory
#   hack/tools/build.sh cluster    only what the local control plane runs (etcd, kube-*, kubectl,
#                                  kwok): all that `make run` needs, so a newcomer waits for no more
#   hack/tools/build.sh compat     only the Kubernetes releases of the compatibility suite
#                                  (KUBERNETES_COMPAT_VERSIONS), into <cache>/kubernetes-bin/<version>
#   hack/tools/build.sh --sync     rewrite the wrapper modules (go.mod, go.sum) from versions.env
#   hack/tools/build.sh --sync-compat  rewrite only the compatibility versions' wrappers
#   hack/tools/build.sh --print-dir  print the bin directory without building
#
# Why wrapper modules: k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them
# with local paths, which Go ignores in a dependency; each wrapper pins the published v0.X.Y of
# every staging module instead. One wrapper per tool keeps minimal version selection from moving
# one tool's dependencies (grpc, otel) under another.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache_root=${ECHO_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/echo-operator/tools}
bin_dir="$cache_root/bin"
export CGO_ENABLED=0 GOTOOLCHAIN=local
# The linker drops debug information (-s -w), so the compiler need not write it (-dwarf=false):
# the same binaries, built faster.
go_build_flags=(-trimpath -gcflags=all=-dwarf=false)

started=$SECONDS
log() { printf '[tools %4ds] %s\n' "$((SECONDS - started))" "$*" >&2; }

wrapper_require() { # module version: the version a wrapper's go.mod requires
  (cd "$here/$1" && go list -m -f '{{.Version}}' "$2")
}

# kube_wrapper dir version: a wrapper module for k8s.io/kubernetes at that version, with every
# staging module replaced by its published v0.X.Y.
kube_wrapper() {
  local dir=$1 version=$2 gomodcache kube_mod
  gomodcache=$(go env GOMODCACHE)
  log "$dir wrapper: k8s.io/kubernetes $version, staging modules at v0.${version#v1.}"
  go mod download k8s.io/kubernetes@"$version"
  kube_mod="$gomodcache/cache/download/k8s.io/kubernetes/@v/$version.mod"
  mkdir -p "$here/$dir"
  {
    printf 'module echo-operator/hack/tools/%s\n\ngo 1.26.0\n\n' "$dir"
    printf 'tool (\n'
    for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
      printf '\tk8s.io/kubernetes/cmd/%s\n' "$cmd"
    done
    printf ')\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$version"
    # The staging list comes from the real go.mod, so new staging modules are never missed.
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$kube_mod" |
      while read -r m; do printf '\t%s => %s %s\n' "$m" "$m" "v0.${version#v1.}"; done
    printf ')\n'
  } >"$here/$dir/go.mod"
  (cd "$here/$dir" && rm -f go.sum && go mod tidy)
}

# The wrapper of a compatibility version: one per minor, hack/tools/kubernetes-1.<minor>.
compat_dir() { # version
  local minor=${1#v1.}
  echo "kubernetes-1.${minor%%.*}"
}

# The compatibility versions' wrappers are not aligned with etcd and kwok: each keeps the module
# versions its own Kubernetes release selects, as that release's binaries were built and tested.
sync_compat_wrappers() {
  local v
  for v in $KUBERNETES_COMPAT_VERSIONS; do kube_wrapper "$(compat_dir "$v")" "$v"; done
}

sync_wrappers() {
  kube_wrapper kubernetes "$KUBERNETES_VERSION"

  log "etcd wrapper: go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  simple_wrapper etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3
  log "kwok wrapper: sigs.k8s.io/kwok $KWOK_VERSION"
  simple_wrapper kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
  log "helm wrapper: helm.sh/helm/v3 $HELM_VERSION"
  simple_wrapper helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
  log "prometheus wrapper: github.com/prometheus/prometheus $PROMETHEUS_VERSION (promtool)"
  simple_wrapper prometheus github.com/prometheus/prometheus "$PROMETHEUS_VERSION" \
    github.com/prometheus/prometheus/cmd/promtool
  log "helm-unittest wrapper: $HELM_UNITTEST_VERSION"
  # Its own go.mod replaces yaml-jsonpath with a fork; a dependency's replace is ignored, so copy it.
  simple_wrapper helm-unittest github.com/helm-unittest/helm-unittest "$HELM_UNITTEST_VERSION" \
    github.com/helm-unittest/helm-unittest/cmd/helm-unittest \
    'github.com/vmware-labs/yaml-jsonpath v0.3.2 => github.com/helm-unittest/yaml-jsonpath v0.4.0'
  log "jaeger wrapper: github.com/jaegertracing/jaeger $JAEGER_VERSION"
  simple_wrapper jaeger github.com/jaegertracing/jaeger "$JAEGER_VERSION" \
    github.com/jaegertracing/jaeger/cmd/jaeger
  log "crane wrapper: github.com/google/go-containerregistry $CRANE_VERSION"
  simple_wrapper crane github.com/google/go-containerregistry "$CRANE_VERSION" \
    github.com/google/go-containerregistry/cmd/crane
  log "cosign wrapper: github.com/sigstore/cosign/v2 $COSIGN_VERSION"
  simple_wrapper cosign github.com/sigstore/cosign/v2 "$COSIGN_VERSION" \
    github.com/sigstore/cosign/v2/cmd/cosign
  align_control_plane
  sync_compat_wrappers
}

# etcd, Kubernetes and kwok share hundreds of packages (grpc, otel, client-go, apimachinery); a package
# compiled for one is reused by the next build only if every module under it has the same version.
# So the three wrappers get the versions one module requiring all three tools would select, while
# staying three modules: etcd then compiles while the others' modules download (one module and one
# build measured slower cold, its downloads overlapping nothing: docs/control-plane.md).
align_control_plane() {
  local tmp versions dir
  log "aligning the etcd, kubernetes and kwok wrappers on one set of module versions"
  tmp=$(mktemp -d)
  sed 's#^module .*#module echo-operator/hack/tools/control-plane#' "$here/kubernetes/go.mod" >"$tmp/go.mod"
  (cd "$tmp" && go get -tool go.etcd.io/etcd/server/v3@"$ETCD_VERSION" \
    sigs.k8s.io/kwok/cmd/kwok@"$KWOK_VERSION" && go mod tidy)
  # Every module that provides a package to one of the three, at the version it resolves to after the
  # Kubernetes staging replacements.
  versions=$(cd "$tmp" && go list -deps \
    -f '{{with .Module}}{{if not .Main}}-require={{.Path}}@{{with .Replace}}{{.Version}}{{else}}{{.Version}}{{end}}{{end}}{{end}}' \
    tool | sort -u)
  rm -rf "$tmp"
  for dir in etcd kubernetes kwok; do
    # shellcheck disable=SC2086 # one -require flag per word
    (cd "$here/$dir" && go mod edit $versions && go mod tidy)
  done
}

simple_wrapper() { # dir module version tool-package [replace]
  local dir=$1 module=$2 version=$3 pkg=$4 replace=${5:-}
  {
    printf 'module echo-operator/hack/tools/%s\n\ngo 1.26.0\n\ntool %s\n\nrequire %s %s\n' \
      "$dir" "$pkg" "$module" "$version"
    [[ -z $replace ]] || printf '\nreplace %s\n' "$replace"
  } >"$here/$dir/go.mod"
  (cd "$here/$dir" && rm -f go.sum && go mod tidy)
}

check_pins() {
  local want got
  while read -r dir module want; do
    got=$(wrapper_require "$dir" "$module")
    if [[ $got != "$want" ]]; then
      echo "hack/tools/$dir/go.mod requires $module $got but versions.env says $want;" \
        "run hack/tools/build.sh --sync" >&2
      exit 1
    fi
  done <<EOF
kubernetes k8s.io/kubernetes $KUBERNETES_VERSION
etcd go.etcd.io/etcd/server/v3 $ETCD_VERSION
kwok sigs.k8s.io/kwok $KWOK_VERSION
helm helm.sh/helm/v3 $HELM_VERSION
helm-unittest github.com/helm-unittest/helm-unittest $HELM_UNITTEST_VERSION
prometheus github.com/prometheus/prometheus $PROMETHEUS_VERSION
jaeger github.com/jaegertracing/jaeger $JAEGER_VERSION
crane github.com/google/go-containerregistry $CRANE_VERSION
cosign github.com/sigstore/cosign/v2 $COSIGN_VERSION
$(for v in $KUBERNETES_COMPAT_VERSIONS; do echo "$(compat_dir "$v") k8s.io/kubernetes $v"; done)
EOF
}

# Where a tool is cached: its version and a hash of its wrapper's go.mod, so that moving any of its
# dependencies (build.sh --sync) rebuilds it.
tool_dest() { # name version wrapper-dir
  echo "$cache_root/$1-$2-$(sha256sum "$here/$3/go.mod" | cut -c1-8)"
}

# build_tool name version wrapper-dir ldflags package... : a package is built into a binary named
# after its last path element, or after the prefix in "binary=package". The versioned directory is filled in a temporary one and renamed at the end,
# so an interrupted build never leaves a half-built tool that looks complete.
build_tool() {
  local name=$1 version=$2 dir=$3 ldflags=$4
  shift 4
  local dest
  dest=$(tool_dest "$name" "$version" "$dir")
  if [[ -d $dest ]]; then
    log "$name $version: cached in $dest"
  else
    local tmp="$dest.partial.$$" t0=$SECONDS
    rm -rf "$tmp" && mkdir -p "$tmp/bin"
    local pkg plain=()
    for pkg in "$@"; do
      if [[ $pkg == *=* ]]; then
        log "$name $version: building ${pkg%%=*} (cold builds take minutes)"
        (cd "$here/$dir" && go build "${go_build_flags[@]}" -ldflags "-s -w $ldflags" -o "$tmp/bin/${pkg%%=*}" "${pkg#*=}")
      else
        plain+=("$pkg")
      fi
    done
    # One go build for the rest: shared packages compile once and the binaries link side by side.
    if ((${#plain[@]})); then
      log "$name $version: building ${plain[*]##*/} (cold builds take minutes)"
      (cd "$here/$dir" && go build "${go_build_flags[@]}" -ldflags "-s -w $ldflags" -o "$tmp/bin/" "${plain[@]}")
    fi
    post_build "$name" "$tmp"
    mv "$tmp" "$dest"
    log "$name $version: built in $((SECONDS - t0))s"
  fi
  # The compatibility versions' binaries stay out of bin/, which holds one version of each tool.
  [[ ${link_bin:-true} == false ]] || for f in "$dest"/bin/*; do ln -sfn "$f" "$bin_dir/$(basename "$f")"; done
}

post_build() { # name dir: extra files a tool needs next to its binary
  case $1 in
    kwok)
      # kwok needs Stage objects; the module ships them.
      local src
      src=$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
      mkdir -p "$2/stages"
      cp "$src"/kustomize/stage/node/fast/node-initialize.yaml \
        "$src"/kustomize/stage/node/heartbeat/node-heartbeat.yaml \
        "$src"/kustomize/stage/pod/fast/pod-ready.yaml \
        "$src"/kustomize/stage/pod/fast/pod-complete.yaml \
        "$src"/kustomize/stage/pod/fast/pod-delete.yaml "$2/stages/"
      chmod 0644 "$2"/stages/*
      ;;
    helm-unittest)
      # A local plugin directory, so `helm unittest` works without `helm plugin install`
      # (which downloads from a release site).
      mkdir -p "$2/plugin/unittest"
      cp "$2/bin/helm-unittest" "$2/plugin/unittest/untt"
      printf 'name: "unittest"\nversion: "%s"\nusage: "unittest for helm charts"\ndescription: "built from Go modules by echo-operator hack/tools/build.sh"\nignoreFlags: false\ncommand: "$HELM_PLUGIN_DIR/untt"\n' \
        "${HELM_UNITTEST_VERSION#v}" >"$2/plugin/unittest/plugin.yaml"
      ;;
  esac
}

# CRDs need no build: copy them out of the module, which the Go checksum database vouches for.
fetch_monitoring_crds() {
  local dest="$cache_root/monitoring-crds-$PROMETHEUS_OPERATOR_VERSION"
  if [[ -d $dest ]]; then
    log "monitoring CRDs $PROMETHEUS_OPERATOR_VERSION: cached in $dest"
  else
    local src tmp="$dest.partial.$$"
    src=$(cd "$here" && go mod download -json \
      "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    rm -rf "$tmp" && mkdir -p "$tmp"
    cp "$src"/example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,prometheusrules}.yaml "$tmp/"
    chmod 0644 "$tmp"/*
    mv "$tmp" "$dest"
    log "monitoring CRDs $PROMETHEUS_OPERATOR_VERSION: copied from the Go module"
  fi
  ln -sfn "$dest" "$cache_root/monitoring-crds"
}

only_cluster=false only_compat=false
case ${1:-} in
  --sync) sync_wrappers; exit 0 ;;
  --sync-compat) sync_compat_wrappers; exit 0 ;;
  --print-dir) echo "$bin_dir"; exit 0 ;;
  cluster) only_cluster=true ;;
  compat) only_compat=true ;;
  "") ;;
  *) echo "usage: $0 [cluster|compat|--sync|--sync-compat|--print-dir]" >&2; exit 2 ;;
esac

command -v go >/dev/null || { echo "go is required (Go 1.26+) to build the control plane tools" >&2; exit 1; }
check_pins
mkdir -p "$bin_dir"

kube_ldflags() { # version: what `kube-apiserver --version` and `kubectl version` report
  local minor=${1#v1.}
  minor=${minor%%.*}
  echo "-X k8s.io/component-base/version.gitVersion=$1" \
    "-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
    "-X k8s.io/component-base/version.gitTreeState=clean" \
    "-X k8s.io/client-go/pkg/version.gitVersion=$1" \
    "-X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
}

# build_kubernetes version wrapper-dir: kube-apiserver, kube-controller-manager, kube-scheduler and
# kubectl in one go build, linked from <cache>/kubernetes-bin/<version>/ whatever the version (the
# default version's also from bin/, beside etcd and kwok).
build_kubernetes() {
  build_tool kubernetes "$1" "$2" "$(kube_ldflags "$1")" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  mkdir -p "$cache_root/kubernetes-bin"
  ln -sfn "$(tool_dest kubernetes "$1" "$2")/bin" "$cache_root/kubernetes-bin/$1"
}

# The older and newest Kubernetes releases that the compatibility suite (make test-compat) runs
# against. Nothing else needs them: only a full build or `build.sh compat` builds them.
build_compat() {
  local v
  for v in $KUBERNETES_COMPAT_VERSIONS; do prefetch_modules "kubernetes:$v:$(compat_dir "$v")"; done
  for v in $KUBERNETES_COMPAT_VERSIONS; do link_bin=false build_kubernetes "$v" "$(compat_dir "$v")"; done
}

# Module downloads are network-bound: fetched in the background for every wrapper, they overlap the
# compiles instead of stalling each one in turn. Compiles run one tool at a time (side by side they
# only fight over the cores: measured slower).
prefetch_modules() { # tool-name:version:wrapper-dir...: only for tools not cached yet
  local spec name version dir
  for spec in "$@"; do
    IFS=: read -r name version dir <<<"$spec"
    [[ -d $(tool_dest "$name" "$version" "$dir") ]] || (cd "$here/$dir" && go mod download >/dev/null 2>&1 &)
  done
}

if $only_compat; then
  build_compat
  log "compatibility versions ready in $cache_root/kubernetes-bin"
  exit 0
fi
prefetch_modules "kubernetes:$KUBERNETES_VERSION:kubernetes" "kwok:$KWOK_VERSION:kwok"
# The standard library compiles while the first tool's modules download (its packages are then
# in the build cache under the same flags); only worth it when that tool is not cached.
[[ -d $(tool_dest etcd "$ETCD_VERSION" etcd) ]] || (cd "$here/etcd" && go build "${go_build_flags[@]}" std >/dev/null 2>&1 &)
build_tool etcd "$ETCD_VERSION" etcd "" etcd=go.etcd.io/etcd/server/v3
build_kubernetes "$KUBERNETES_VERSION" kubernetes
build_tool kwok "$KWOK_VERSION" kwok "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
  sigs.k8s.io/kwok/cmd/kwok
ln -sfn "$(tool_dest kwok "$KWOK_VERSION" kwok)/stages" "$cache_root/kwok-stages"
if $only_cluster; then
  log "control plane tools ready in $bin_dir"
  echo "$bin_dir"
  exit 0
fi

# Only the tests, the chart and the image need these.
metrics_parse_hash=$(sha256sum "$here/prometheus/metrics-parse/main.go" | cut -c1-8)
prefetch_modules "helm-unittest:$HELM_UNITTEST_VERSION:helm-unittest" \
  "prometheus:$PROMETHEUS_VERSION-$metrics_parse_hash:prometheus" "jaeger:$JAEGER_VERSION:jaeger" \
  "crane:$CRANE_VERSION:crane" "cosign:$COSIGN_VERSION:cosign"
# The Kubernetes version helm assumes without a cluster (helm template, lint: what a chart's
# kubeVersion is checked against), set as helm's Makefile does from its client-go: else v1.20.0,
# which the chart's kubeVersion refuses. Part of the cache key, so a build without it is replaced.
helm_kube_minor=$(wrapper_require helm k8s.io/client-go | cut -d. -f2)
build_tool helm "$HELM_VERSION-kube1.$helm_kube_minor" helm \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION$(for pkg in chartutil lint/rules; do
    printf ' -X helm.sh/helm/v3/pkg/%s.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/%s.k8sVersionMinor=%s' \
      "$pkg" "$pkg" "$helm_kube_minor"
  done)" helm.sh/helm/v3/cmd/helm
build_tool helm-unittest "$HELM_UNITTEST_VERSION" helm-unittest "" \
  github.com/helm-unittest/helm-unittest/cmd/helm-unittest
# metrics-parse is our own source: its hash is part of the cache key, so an edit rebuilds it.
build_tool prometheus "$PROMETHEUS_VERSION-$metrics_parse_hash" prometheus "" \
  github.com/prometheus/prometheus/cmd/promtool metrics-parse=./metrics-parse
build_tool jaeger "$JAEGER_VERSION" jaeger "" github.com/jaegertracing/jaeger/cmd/jaeger
build_tool crane "$CRANE_VERSION" crane "" github.com/google/go-containerregistry/cmd/crane
# What `cosign version` reports, as cosign's own Makefile sets it.
build_tool cosign "$COSIGN_VERSION" cosign "-X sigs.k8s.io/release-utils/version.gitVersion=$COSIGN_VERSION" \
  github.com/sigstore/cosign/v2/cmd/cosign
fetch_monitoring_crds
build_compat
# A stable name for the plugin directory, wherever the versioned one is.
ln -sfn "$(tool_dest helm-unittest "$HELM_UNITTEST_VERSION" helm-unittest)/plugin" "$cache_root/helm-plugins"

log "all tools ready in $bin_dir"
echo "$bin_dir"
