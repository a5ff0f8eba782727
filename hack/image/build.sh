#!/usr/bin/env bash
# Builds the operator's container image without a container engine, with the layout of the
# Dockerfile, and checks what it built.
#
#   hack/image/build.sh [--output DIR] [--version VERSION]
#       build into DIR (default dist/image): an OCI layout in DIR/oci, a `docker load`-able
#       archive DIR/echo-operator-VERSION.tar, tagged as the chart's default image, and its SBOM,
#       DIR/sbom.cdx.json (CycloneDX). VERSION (default package.json's) is the tag, the version
#       label and what the operator's --version says (the image's package.json carries it)
#   hack/image/build.sh --verify [--output DIR] [--version VERSION] [--rootfs DIR]
#       check the image in DIR (needs root, for chroot); with --rootfs, keep its unpacked root
#       filesystem in that directory
#
# The image: Debian's libc6, libstdc++6 and libgcc-s1 (all the Node binary links against),
# base-files and netbase, from the machine's own apt sources; the project's pinned Node binary
# from npm as /usr/local/bin/node; /app with the production node_modules, package.json, src/ (compiled) and
# LICENSE. Everything is owned by root and read-only to the `node` user (1000:1000) it runs as.
# NODE_OPTIONS is the chart's operator.nodeOptions, so the image alone runs as the chart does.
# crane (built from Go modules by hack/tools/build.sh) assembles the layers in a registry it runs
# in memory on loopback for the length of this script. Layer tarballs are sorted, owned by root
# and dated 1970, so the same inputs give the same digest.
set -euo pipefail
# The staging trees' permissions become the image's: the same on every machine.
umask 022

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache_root=${ECHO_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/echo-operator/tools}
# The project's Node 24 first: it runs npm and this script's JSON snippets.
export PATH="$repo/node_modules/.bin:$PATH"

readonly base_packages=(libc6 libstdc++6 libgcc-s1 base-files netbase)
readonly entrypoint=(/usr/local/bin/node /app/src/main.js)
readonly image_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
readonly user=1000:1000
readonly http_port=8080

started=$SECONDS
log() { printf '[image %4ds] %s\n' "$((SECONDS - started))" "$*" >&2; }
die() {
  printf 'hack/image/build.sh: %s\n' "$*" >&2
  exit 1
}

mode=build
output=$repo/dist/image
keep_rootfs=
version=
while (($# > 0)); do
  case $1 in
    --verify) mode=verify ;;
    --output) output=${2:?--output needs a directory}; shift ;;
    --rootfs) keep_rootfs=${2:?--rootfs needs a directory}; shift ;;
    --version) version=${2:?--version needs a version}; shift ;;
    *)
      echo "usage: $0 [--output DIR] [--version VERSION] | --verify [--output DIR] [--version VERSION] [--rootfs DIR]" >&2
      exit 2
      ;;
  esac
  shift
done
output=$(realpath -m "$output")

if [[ ! -x $repo/node_modules/.bin/node ]] || [[ $(node --version) != v24.* ]]; then
  die "the project's Node 24 is missing from node_modules: run make setup"
fi
crane="$("$repo/hack/tools/build.sh" --print-dir)/crane"
[[ -x $crane ]] || die "crane is missing from the tool cache: run make tools"

# What the image says about itself comes from package.json and the chart, so it never drifts.
IFS=$'\t' read -r package_version license node_version repository source node_options < <(
  cd "$repo" && node --input-type=module -e '
    import { readFileSync } from "node:fs";
    import { parse } from "yaml";
    const pkg = JSON.parse(readFileSync("package.json", "utf8"));
    const chart = parse(readFileSync("charts/echo-operator/Chart.yaml", "utf8"));
    const values = parse(readFileSync("charts/echo-operator/values.yaml", "utf8"));
    console.log([pkg.version, pkg.license, pkg.devDependencies.node, values.image.repository,
      chart.home, values.operator.nodeOptions].join("\t"));
  '
)
version=${version:-$package_version}
# Semantic versioning, as helm wants a chart's version (an image tag takes no `+`).
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
  die "version '$version' is not MAJOR.MINOR.PATCH[-PRERELEASE]"
archive=$output/echo-operator-$version.tar

work=$(mktemp -d "${TMPDIR:-/tmp}/echo-image.XXXXXX")
registry_pid=
cleanup() {
  if [[ -n $registry_pid ]]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# quietly COMMAND...: runs COMMAND, showing its output only when it fails.
quietly() {
  "$@" >"$work/quietly.log" 2>&1 || die "$1 $2 failed:"$'\n'"$(cat "$work/quietly.log")"
}

# Sets `registry` to the host:port of a registry in memory, stopped by `cleanup`.
start_registry() {
  "$crane" registry serve --address 127.0.0.1:0 2>"$work/registry.log" &
  registry_pid=$!
  local tries port=
  for ((tries = 0; tries < 100; tries++)); do
    port=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$work/registry.log")
    [[ -z $port ]] || break
    kill -0 "$registry_pid" 2>/dev/null ||
      die "crane registry serve exited: $(cat "$work/registry.log")"
    sleep 0.1
  done
  [[ -n $port ]] || die "crane registry serve did not report its port within 10s"
  registry=127.0.0.1:$port
}

# layer_tar DIR TARBALL [tar options]: DIR's contents as a reproducible layer.
layer_tar() {
  local dir=$1 tarball=$2
  shift 2
  # The entry for "./" sets the mode of the container's "/": mktemp's 0700 would lock out uid 1000.
  chmod 0755 "$dir"
  tar --create --file="$tarball" --directory="$dir" --sort=name --mtime=@0 \
    --owner=0 --group=0 --numeric-owner "$@" .
}

# Sets `debs` to the .deb files of base_packages and what they depend on, fetched through apt
# with a state of its own under the tool cache: the machine's sources and keyrings (so every
# package is signature-checked), and the machine's own apt state left alone.
fetch_debs() {
  local apt_dir=$cache_root/image-apt
  mkdir -p "$apt_dir"/lists/partial "$apt_dir"/cache/archives/partial "$apt_dir"/debs
  local apt_options=(
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
    -o Dir::State::status=/dev/null -o "APT::Sandbox::User=$(id -un)"
  )
  apt-get "${apt_options[@]}" -qq update ||
    die "apt-get update failed: are the machine's apt sources reachable?"
  # Packages are unpacked, never configured: what maintainer scripts need (Pre-Depends) is left out.
  apt-cache "${apt_options[@]}" depends --recurse --no-pre-depends --no-recommends --no-suggests \
    --no-conflicts --no-breaks --no-replaces --no-enhances "${base_packages[@]}" >"$work/depends"
  local packages
  mapfile -t packages < <(grep -v '^[ <]' "$work/depends" | LC_ALL=C sort -u)
  log "Debian packages: ${packages[*]}"
  # From an empty directory: --print-uris leaves out the files already in the current one.
  mkdir "$work/uris"
  (cd "$work/uris" && apt-get "${apt_options[@]}" --print-uris download "${packages[@]}") \
    >"$work/uris/list"
  mapfile -t debs < <(awk -v dir="$apt_dir/debs" '{print dir "/" $2}' "$work/uris/list")
  # What the SBOM lists: each package's name, version, architecture and source package.
  local deb
  for deb in "${debs[@]}"; do
    dpkg-deb --show --showformat='${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\n' "$deb"
  done >"$work/debian.tsv"
  # apt-get download keeps a file that is already there with the right checksum.
  (cd "$apt_dir/debs" && apt-get "${apt_options[@]}" -qq download "${packages[@]}")
}

build_base_layer() {
  local root=$work/layers/base deb debs
  mkdir -p "$root"
  fetch_debs
  for deb in "${debs[@]}"; do dpkg-deb --extract "$deb" "$root"; done
  # What Debian's slim images leave out, copyright files kept.
  rm -rf "$root"/usr/share/{man,groff,info,lintian,linda,locale}
  find "$root/usr/share/doc" -type f ! -name copyright -delete
  find "$root/usr/share/doc" -type l -delete
  printf '%s\n' root:x:0:0:root:/root:/usr/sbin/nologin \
    node:x:1000:1000:node:/nonexistent:/usr/sbin/nologin >"$root/etc/passwd"
  printf 'root:x:0:\nnode:x:1000:\n' >"$root/etc/group"
  # Without this file glibc asks DNS before /etc/hosts.
  printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' 'networks: files' \
    'protocols: files' 'services: files' >"$root/etc/nsswitch.conf"
  log "base: Debian $(cat "$root/etc/debian_version")"
  layer_tar "$root" "$work/base.tar"
}

build_node_layer() {
  local root=$work/layers/node
  # The binary this project runs (npm's `node` package): byte for byte what package-lock.json pins.
  install -D -m 0755 "$(readlink -f "$repo/node_modules/.bin/node")" "$root/usr/local/bin/node"
  layer_tar "$root" "$work/node.tar"
}

# Two layers: dependencies change less often than the sources, so a push mostly sends only src/.
build_app_layers() {
  local deps=$work/layers/deps app=$work/layers/app
  mkdir -p "$deps/app" "$app/app"
  cp "$repo/package.json" "$repo/package-lock.json" "$deps/app/"
  log "production dependencies: npm ci --omit=dev"
  # No install scripts: the only production one (protobufjs's postinstall) prints a version
  # warning, and nothing should run code at build time.
  (cd "$deps/app" && quietly npm ci --omit=dev --ignore-scripts --no-audit --no-fund)
  rm "$deps/app/package.json" "$deps/app/package-lock.json"
  log "compiling src/ to JavaScript (type stripping at run time would cost ~25 MB of memory)"
  "$repo/node_modules/.bin/tsc" -p "$repo/tsconfig.build.json" --outDir "$app/app" --sourceMap false
  cp "$repo/package.json" "$repo/LICENSE" "$app/app/"
  # The version the operator reports (--version, its metrics) is its package.json's: the image's.
  node -e '
    const fs = require("node:fs");
    const [file, version] = process.argv.slice(1);
    const pkg = JSON.parse(fs.readFileSync(file, "utf8"));
    if (pkg.version !== version) fs.writeFileSync(file, JSON.stringify({ ...pkg, version }, null, 2) + "\n");
  ' "$app/app/package.json" "$version"
  # The lockfile's packages that are in the image, for the SBOM.
  (cd "$repo" && node -e '
    const fs = require("node:fs");
    const path = require("node:path");
    const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
    for (const where of Object.keys(lock.packages))
      if (where !== "" && fs.existsSync(path.join(process.argv[1], where, "package.json")))
        console.log(where);
  ' "$deps/app") >"$work/npm.txt"
  # Readable by all, writable by root only, whatever modes the packages or the checkout had.
  layer_tar "$deps" "$work/deps.tar" --mode=u+rwX,go=rX
  layer_tar "$app" "$work/app.tar" --mode=u+rwX,go=rX
}

build() {
  build_base_layer
  build_node_layer
  build_app_layers
  start_registry
  local layers=$registry/echo-operator:layers ref=$registry/echo-operator:$version
  log "assembling the image"
  quietly "$crane" append --oci-empty-base -t "$layers" \
    -f "$work/base.tar" -f "$work/node.tar" -f "$work/deps.tar" -f "$work/app.tar"
  quietly "$crane" mutate "$layers" -t "$ref" \
    --set-platform "linux/$(dpkg --print-architecture)" \
    --entrypoint "$(IFS=,; echo "${entrypoint[*]}")" \
    --user "$user" --workdir /app --exposed-ports "$http_port/tcp" \
    --env NODE_ENV=production --env "NODE_OPTIONS=$node_options" --env "PATH=$image_path" \
    --label org.opencontainers.image.title=echo-operator \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.source=$source" \
    --label "org.opencontainers.image.licenses=$license"

  mkdir -p "$output"
  rm -rf "$output/oci" "$archive"
  # Pulled into the work directory first: crane adds to an OCI layout that already exists.
  quietly "$crane" pull --format=oci "$ref" "$work/oci"
  # The tag as the layout's reference name, so `skopeo copy oci:dist/image/oci:VERSION` works.
  node -e '
    const fs = require("node:fs");
    const [file, tag] = process.argv.slice(1);
    const index = JSON.parse(fs.readFileSync(file, "utf8"));
    index.manifests[0].annotations = { "org.opencontainers.image.ref.name": tag };
    fs.writeFileSync(file, JSON.stringify(index));
  ' "$work/oci/index.json" "$version"
  # crane writes every file of the layout executable.
  find "$work/oci" -type f -exec chmod 0644 {} +
  mv "$work/oci" "$output/oci"

  # crane tags the archive with this script's registry; `docker load` should give the chart's image.
  quietly "$crane" pull "$ref" "$work/docker.tar"
  mkdir "$work/docker"
  tar --extract --file="$work/docker.tar" --directory="$work/docker"
  node -e '
    const fs = require("node:fs");
    const [file, tag] = process.argv.slice(1);
    const manifest = JSON.parse(fs.readFileSync(file, "utf8"));
    manifest[0].RepoTags = [tag];
    fs.writeFileSync(file, JSON.stringify(manifest));
  ' "$work/docker/manifest.json" "$repository:$version"
  (cd "$work/docker" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) |
    tar --create --file="$archive" --directory="$work/docker" --mtime=@0 --owner=0 --group=0 \
      --numeric-owner --no-recursion --files-from=-

  local digest size
  digest=$("$crane" digest "$ref")
  log "writing the SBOM from what went into the image"
  node "$repo/hack/image/sbom.ts" --version "$version" --repository "$repository" \
    --digest "$digest" --platform "linux/$(dpkg --print-architecture)" \
    --debian "$work/debian.tsv" --npm "$work/npm.txt" \
    --debian-version "$(cat "$work/layers/base/etc/debian_version")" \
    --node-binary "$work/layers/node/usr/local/bin/node" >"$output/sbom.cdx.json"
  size=$(du -sm "$output/oci/blobs" | cut -f1)
  log "built $repository:$version ($size MB compressed) in $((SECONDS - started))s"
  log "OCI layout: $output/oci; docker archive: $archive; SBOM: $output/sbom.cdx.json"
  echo "$digest"
}

# in_image ROOTFS COMMAND...: COMMAND in the image's root filesystem, as its user, with its
# environment only, as a container runtime would run it.
in_image() {
  local rootfs=$1
  shift
  env -i NODE_ENV=production "NODE_OPTIONS=$node_options" "PATH=$image_path" chroot --userspec="$user" "$rootfs" "$@"
}

verify() {
  [[ $EUID -eq 0 ]] || die "--verify runs the image in a chroot, which needs root"
  [[ -f $output/oci/index.json && -f $archive ]] ||
    die "no image in $output: run hack/image/build.sh first"
  start_registry
  local from_layout=$registry/echo-operator:layout from_archive=$registry/echo-operator:archive
  quietly "$crane" push "$output/oci" "$from_layout"
  quietly "$crane" push "$archive" "$from_archive"
  quietly "$crane" validate --remote "$from_layout"
  "$crane" config "$from_layout" >"$work/config.json"
  [[ $("$crane" config "$from_archive") == "$(cat "$work/config.json")" ]] ||
    die "the docker archive and the OCI layout hold different images"

  log "checking the image's configuration"
  # shellcheck disable=SC2016 # JavaScript template literals, not shell expansions
  node -e '
    const fs = require("node:fs");
    const [file, arch, user, entrypoint, path, port, license, source, version, nodeOptions] =
      process.argv.slice(1);
    const expected = {
      platform: `linux/${arch}`,
      user,
      entrypoint: entrypoint.split(" "),
      cmd: null,
      workdir: "/app",
      env: ["NODE_ENV=production", `NODE_OPTIONS=${nodeOptions}`, `PATH=${path}`],
      exposedPorts: [`${port}/tcp`],
      labels: {
        "org.opencontainers.image.licenses": license,
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.title": "echo-operator",
        "org.opencontainers.image.version": version,
      },
    };
    const image = JSON.parse(fs.readFileSync(file, "utf8"));
    const c = image.config;
    const actual = {
      platform: `${image.os}/${image.architecture}`,
      user: c.User,
      entrypoint: c.Entrypoint,
      cmd: c.Cmd ?? null,
      workdir: c.WorkingDir,
      env: c.Env,
      exposedPorts: Object.keys(c.ExposedPorts ?? {}),
      labels: c.Labels,
    };
    const wrong = Object.keys(expected).filter(
      (k) => JSON.stringify(actual[k]) !== JSON.stringify(expected[k]),
    );
    for (const k of wrong)
      console.error(`${k}: ${JSON.stringify(actual[k])}, expected ${JSON.stringify(expected[k])}`);
    process.exitCode = wrong.length === 0 ? 0 : 1;
  ' "$work/config.json" "$(dpkg --print-architecture)" "$user" "${entrypoint[*]}" "$image_path" \
    "$http_port" "$license" "$source" "$version" "$node_options" ||
    die "the image's configuration is not the expected one"

  local rootfs=${keep_rootfs:-$work/rootfs}
  mkdir -p "$rootfs"
  [[ -z $(ls -A "$rootfs") ]] || die "$rootfs is not empty"
  "$crane" export "$from_layout" - | tar --extract --numeric-owner --directory="$rootfs"
  # tar leaves the extraction directory's own mode alone; the container's "/" is 0755.
  chmod 0755 "$rootfs"

  log "running the image's entrypoint as $user in a chroot"
  local got
  got=$(in_image "$rootfs" "${entrypoint[@]}" --version) ||
    die "the entrypoint failed with --version"
  [[ $got == "$version" ]] || die "the entrypoint says version '$got', expected $version"
  got=$(in_image "$rootfs" "${entrypoint[@]}" --help) || die "the entrypoint failed with --help"
  [[ $got == *--namespaces* ]] || die "the entrypoint's --help does not list the flags: $got"
  got=$(in_image "$rootfs" /usr/local/bin/node --version)
  [[ $got == "v$node_version" ]] || die "the image's Node is $got, package.json pins $node_version"
  got=$(in_image "$rootfs" /usr/local/bin/node -p 'require("node:os").userInfo().username')
  [[ $got == node ]] || die "uid 1000 is '$got' in the image, expected node (from /etc/passwd)"
  # Node carries its own CA roots: TLS to an OTLP collector needs no ca-certificates package.
  got=$(in_image "$rootfs" /usr/local/bin/node -p 'require("node:tls").rootCertificates.length')
  ((got > 100)) || die "Node sees $got CA roots in the image"

  # Debian's sticky temporary directories (/tmp, /var/tmp) aside, the node user can write nothing.
  local writable
  writable=$(find "$rootfs" \( -uid 1000 -o -gid 1000 -o \
    \( -perm -0002 ! -perm -1000 ! -type l \) \) -printf '/%P ')
  [[ -z $writable ]] || die "writable by the node user: $writable"

  log "checking /app/node_modules against package-lock.json"
  # shellcheck disable=SC2016 # JavaScript template literals, not shell expansions
  (cd "$repo" && node -e '
    const fs = require("node:fs");
    const path = require("node:path");
    const app = process.argv[1];
    const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
    const problems = [];
    for (const [where, entry] of Object.entries(lock.packages)) {
      if (where === "") continue;
      const file = path.join(app, where, "package.json");
      if (entry.dev) {
        if (fs.existsSync(file)) problems.push(`${where}: a development dependency`);
      } else if (!entry.optional && !entry.devOptional) {
        if (!fs.existsSync(file)) problems.push(`${where}: missing`);
        else if (JSON.parse(fs.readFileSync(file, "utf8")).version !== entry.version)
          problems.push(`${where}: not version ${entry.version}`);
      }
    }
    for (const p of problems) console.error(p);
    process.exitCode = problems.length === 0 ? 0 : 1;
  ' "$rootfs/app") || die "/app/node_modules is not the lockfile's production set"
  # The toolchain by name as well: a lockfile that lost its dev flags must still not ship it.
  for name in typescript eslint prettier node; do
    [[ ! -e $rootfs/app/node_modules/$name ]] || die "development dependency $name is in the image"
  done

  log "verified: $(du -sm "$rootfs" | cut -f1) MB unpacked, $("$crane" digest "$from_layout")"
}

"$mode"
