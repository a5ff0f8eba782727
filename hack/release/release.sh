#!/usr/bin/env bash
# Builds a release of echo-operator into one folder, and pushes a release to an OCI registry.
#
#   hack/release/release.sh build VERSION [--output DIR] [--chart DIR] [--image DIR]
#       build into DIR (default dist/release/VERSION):
#         echo-operator-VERSION.oci.tar        the image: an OCI image layout in a tar (skopeo's
#                                              oci-archive:), with a docker manifest.json too, so
#                                              `docker load` and `crane push` take it as it is
#         echo-operator-VERSION.sbom.cdx.json  the image's SBOM (CycloneDX 1.6)
#         echo-operator-VERSION.tgz            the chart (helm package): version and appVersion
#                                              VERSION, so its default image tag is VERSION
#         SHA256SUMS                           the three files' SHA-256
#         SHA256SUMS.sig, SHA256SUMS.bundle,   with COSIGN_KEY: the signature of SHA256SUMS
#         cosign.pub                           (cosign sign-blob; no transparency log) and the
#                                              public key to check it with
#       --chart DIR: the chart to package (default charts/echo-operator); --image DIR: the image of
#       an earlier release folder (or of hack/image/build.sh's --output), released under VERSION as
#       it is, content, labels and SBOM unchanged: a chart-only release. By default the image is
#       built, tagged VERSION, and checked when run as root (hack/image/build.sh --verify).
#   hack/release/release.sh push DIR REGISTRY [--plain-http]
#       push DIR's image to REGISTRY/echo-operator:VERSION and its chart to
#       oci://REGISTRY/charts (REGISTRY/charts/echo-operator:VERSION), sign both by digest with
#       COSIGN_KEY (required) and verify the signatures; --plain-http for a registry without TLS.
#
# COSIGN_KEY: a cosign private key (a file, or a KMS URI cosign takes), COSIGN_PASSWORD its
# password. Without COSIGN_KEY, `build` writes an unsigned release and says so; `push` refuses.
# Signatures are made offline: no Rekor transparency log (--tlog-upload=false), no Fulcio
# certificate; verify them with the public key and --insecure-ignore-tlog (docs/install.md).
set -euo pipefail
umask 022

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PATH="$repo/node_modules/.bin:$PATH"
tools=$("$repo/hack/tools/build.sh" --print-dir)
crane=$tools/crane
helm=$tools/helm
cosign=$tools/cosign

started=$SECONDS
log() { printf '[release %4ds] %s\n' "$((SECONDS - started))" "$*" >&2; }
die() {
  printf 'hack/release/release.sh: %s\n' "$*" >&2
  exit 1
}
usage() {
  echo "usage: $0 build VERSION [--output DIR] [--chart DIR] [--image DIR]" >&2
  echo "       $0 push DIR REGISTRY [--plain-http]" >&2
  exit 2
}

for tool in "$crane" "$helm" "$cosign"; do
  [[ -x $tool ]] || die "$(basename "$tool") is missing from the tool cache: run make tools"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/echo-release.XXXXXX")
trap 'rm -rf "$work"' EXIT

# quietly COMMAND...: runs COMMAND, showing its output only when it fails.
quietly() {
  "$@" >"$work/quietly.log" 2>&1 || die "$(basename "$1") $2 failed:"$'\n'"$(cat "$work/quietly.log")"
}

# oci_archive LAYOUT TAG REPOSITORY ARCHIVE: the OCI layout as one tar, with a docker manifest.json
# beside index.json (as `docker save` writes since Docker 25): the layers are the same blobs.
oci_archive() {
  local layout=$1 tag=$2 repository=$3 archive=$4
  cp -r "$layout" "$work/archive"
  (cd "$work/archive" && node -e '
    const fs = require("node:fs");
    const [tag, repository] = process.argv.slice(1);
    const index = JSON.parse(fs.readFileSync("index.json", "utf8"));
    if (index.manifests.length !== 1) throw new Error("the layout holds more than one image");
    const desc = index.manifests[0];
    desc.annotations = { "org.opencontainers.image.ref.name": tag };
    fs.writeFileSync("index.json", JSON.stringify(index));
    const blob = (d) => `blobs/${d.replace(":", "/")}`;
    const manifest = JSON.parse(fs.readFileSync(blob(desc.digest), "utf8"));
    fs.writeFileSync("manifest.json", JSON.stringify([{
      Config: blob(manifest.config.digest),
      RepoTags: [`${repository}:${tag}`],
      Layers: manifest.layers.map((l) => blob(l.digest)),
    }]));
  ' "$tag" "$repository")
  (cd "$work/archive" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) |
    tar --create --file="$archive" --directory="$work/archive" --mtime=@0 --owner=0 --group=0 \
      --numeric-owner --no-recursion --files-from=-
  rm -rf "$work/archive"
}

build() {
  local version=${1:-}
  shift || true
  [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
    die "VERSION '$version' is not MAJOR.MINOR.PATCH[-PRERELEASE] (make release VERSION=x.y.z)"
  local output=$repo/dist/release/$version chart=$repo/charts/echo-operator image=
  while (($# > 0)); do
    case $1 in
      --output) output=${2:?--output needs a directory}; shift ;;
      --chart) chart=${2:?--chart needs a directory}; shift ;;
      --image) image=${2:?--image needs a directory}; shift ;;
      *) usage ;;
    esac
    shift
  done
  output=$(realpath -m "$output")
  [[ -f $chart/Chart.yaml ]] || die "no chart in $chart"
  local repository
  repository=$(cd "$repo" && node --input-type=module -e '
    import { readFileSync } from "node:fs";
    import { parse } from "yaml";
    console.log(parse(readFileSync(process.argv[1], "utf8")).image.repository);
  ' "$chart/values.yaml")
  rm -rf "$output"
  mkdir -p "$output"

  if [[ -n $image ]]; then
    local archive
    archive=$(find "$image" -maxdepth 1 -name 'echo-operator-*.oci.tar' -print -quit)
    if [[ -n $archive ]]; then
      # A release folder: its image archive and SBOM.
      mkdir -p "$work/image/oci"
      tar --extract --file="$archive" --directory="$work/image/oci" --exclude=manifest.json
      cp "${archive%.oci.tar}.sbom.cdx.json" "$work/image/sbom.cdx.json"
      image=$work/image
    fi
    [[ -f $image/oci/index.json && -f $image/sbom.cdx.json ]] ||
      die "no image in $image: neither a release folder nor hack/image/build.sh's output"
    log "image: $image, released as $version unchanged"
  else
    image=$work/image
    log "image: building $repository:$version"
    "$repo/hack/image/build.sh" --output "$image" --version "$version" >/dev/null
    if [[ $EUID -eq 0 ]]; then
      "$repo/hack/image/build.sh" --verify --output "$image" --version "$version"
    else
      log "image: not checked (hack/image/build.sh --verify runs it in a chroot, which needs root)"
    fi
  fi
  oci_archive "$image/oci" "$version" "$repository" "$output/echo-operator-$version.oci.tar"
  cp "$image/sbom.cdx.json" "$output/echo-operator-$version.sbom.cdx.json"

  log "chart: packaging $chart as $version"
  # From a copy: helm package reads the chart's .helmignore, and leaves the source alone.
  mkdir "$work/chart"
  cp -r "$chart" "$work/chart/echo-operator"
  quietly "$helm" lint --strict "$work/chart/echo-operator"
  quietly "$helm" package --version "$version" --app-version "$version" \
    --destination "$output" "$work/chart/echo-operator"
  local packaged=$output/echo-operator-$version.tgz rendered
  [[ -f $packaged ]] || die "helm package did not write $packaged"
  rendered=$("$helm" template echo "$packaged" --show-only templates/deployment.yaml |
    sed -n 's/^ *image: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p')
  [[ $rendered == "$repository:$version" ]] ||
    die "the packaged chart's default image is '$rendered', expected $repository:$version"

  (cd "$output" && sha256sum -- * | LC_ALL=C sort -k2 >"$work/SHA256SUMS" && mv "$work/SHA256SUMS" SHA256SUMS)
  if [[ -n ${COSIGN_KEY:-} ]]; then
    log "signing SHA256SUMS with $COSIGN_KEY"
    quietly "$cosign" sign-blob --yes --key "$COSIGN_KEY" --tlog-upload=false \
      --bundle "$output/SHA256SUMS.bundle" --output-signature "$output/SHA256SUMS.sig" \
      "$output/SHA256SUMS"
    "$cosign" public-key --key "$COSIGN_KEY" >"$output/cosign.pub" 2>"$work/public-key.log" ||
      die "cosign public-key failed: $(cat "$work/public-key.log")"
    quietly "$cosign" verify-blob --key "$output/cosign.pub" --bundle "$output/SHA256SUMS.bundle" \
      --insecure-ignore-tlog=true "$output/SHA256SUMS"
    # cosign writes its files for the owner only; a release is for everyone to read.
    chmod 0644 "$output/SHA256SUMS.bundle" "$output/SHA256SUMS.sig"
  else
    log "UNSIGNED: COSIGN_KEY is not set, so SHA256SUMS has no signature (make release COSIGN_KEY=<key>)"
  fi
  log "release $version in $output:"
  (cd "$output" && ls -l) >&2
}

# digest_of OUTPUT: the sha256:… that a push printed.
digest_of() {
  grep -o 'sha256:[0-9a-f]\{64\}' <<<"$1" | tail -1
}

push() {
  local dir=${1:-} registry=${2:-}
  [[ -n $dir && -n $registry ]] || usage
  shift 2
  local helm_http=() cosign_http=()
  while (($# > 0)); do
    case $1 in
      --plain-http) helm_http=(--plain-http); cosign_http=(--allow-http-registry=true) ;;
      *) usage ;;
    esac
    shift
  done
  [[ -n ${COSIGN_KEY:-} ]] ||
    die "COSIGN_KEY is not set: nothing is pushed unsigned (make release-push COSIGN_KEY=<key>)"
  local chart version
  chart=$(find "$dir" -maxdepth 1 -name 'echo-operator-*.tgz' -print -quit)
  [[ -n $chart ]] || die "no chart in $dir: run make release first"
  version=$(basename "$chart" .tgz)
  version=${version#echo-operator-}
  (cd "$dir" && sha256sum --quiet --check SHA256SUMS) || die "$dir does not match its SHA256SUMS"
  "$cosign" public-key --key "$COSIGN_KEY" >"$work/cosign.pub" 2>"$work/public-key.log" ||
    die "cosign public-key failed: $(cat "$work/public-key.log")"

  local image=$registry/echo-operator out digest
  log "pushing the image to $image:$version"
  # As an OCI layout, so the registry holds the manifest the archive has, digest and all (crane
  # would push the archive itself as a docker one: the same layers under another manifest).
  mkdir "$work/layout"
  tar --extract --file="$dir/echo-operator-$version.oci.tar" --directory="$work/layout"
  local want
  want=$(node -p 'JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8")).manifests[0].digest' \
    "$work/layout/index.json")
  out=$("$crane" push "$work/layout" "$image:$version" 2>&1) || die "crane push failed: $out"
  digest=$(digest_of "$out")
  [[ $digest == "$want" ]] || die "the registry has the image as $digest, the archive as $want"
  local image_ref=$image@$digest
  log "pushing the chart to oci://$registry/charts"
  out=$("$helm" push "$chart" "oci://$registry/charts" "${helm_http[@]}" 2>&1) ||
    die "helm push failed: $out"
  digest=$(digest_of "$out")
  local chart_ref=$registry/charts/echo-operator@$digest
  local ref
  for ref in "$image_ref" "$chart_ref"; do
    log "signing $ref"
    quietly "$cosign" sign --yes --key "$COSIGN_KEY" --tlog-upload=false "${cosign_http[@]}" "$ref"
    quietly "$cosign" verify --key "$work/cosign.pub" --insecure-ignore-tlog=true \
      "${cosign_http[@]}" "$ref"
  done
  log "pushed and signed release $version"
  printf 'image %s\nchart %s\n' "$image_ref" "$chart_ref"
}

case ${1:-} in
  build) shift; build "$@" ;;
  push) shift; push "$@" ;;
  *) usage ;;
esac
