#!/usr/bin/env bash
# Starts a private containerd (1.6, Debian's) with its CRI plugin set up for a machine without a
# registry, and imports the images Coxswain's tests and examples use, built locally:
#   docker.io/library/busybox:latest   busybox-static, every applet linked into /bin (`image: busybox`)
#   cox.local/pause:1                  the sandbox ("pause") image: a shell that waits for SIGTERM
#
#   scripts/containerd-env.sh start [DIR]   # prints the endpoint: unix://DIR/containerd.sock
#   scripts/containerd-env.sh stop [DIR]    # stops it and every container it ran
#
# DIR defaults to /run/cox-containerd. Installs containerd, runc, containernetworking-plugins, umoci
# and busybox-static when missing (Debian). The CRI settings that matter here:
#   restrict_oom_score_adj = true   runc may not lower oom_score_adj in this sandbox; without it
#                                   every sandbox fails ("can't get final child's PID from pipe")
#   sandbox_image                   the local pause image (no registry to pull one from)
#   cni conf_dir                    DIR/cni: empty, so the node agent writes a bridge config for its
#                                   node's pod CIDR (containerd reports NetworkReady=false until then)
set -euo pipefail
cmd=${1:-start}
dir=${2:-/run/cox-containerd}
sock="$dir/containerd.sock"

need() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v umoci >/dev/null || missing+=(umoci)
  [ -x /bin/busybox ] && /bin/busybox --list | grep -qx httpd || missing+=(busybox-static)
  if [ ${#missing[@]} -gt 0 ]; then
    # Into a file: a package's install script may start a daemon (Debian's containerd starts the
    # system one), which would otherwise hold our caller's output open.
    mkdir -p "$dir"
    echo "installing ${missing[*]} (log: $dir/apt.log)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } > "$dir/apt.log" 2>&1 < /dev/null \
      || { tail -20 "$dir/apt.log" >&2; exit 1; }
  fi
}

ctr_() { ctr --address "$sock" -n k8s.io "$@"; }

# An OCI image of busybox-static with every applet linked, its default command $2, named $1.
build_image() {
  local name=$1 cmd=$2 work
  work=$(mktemp -d)
  umoci init --layout "$work/layout"
  umoci new --image "$work/layout:img"
  umoci unpack --rootless --image "$work/layout:img" "$work/bundle" >/dev/null 2>&1 || umoci unpack --image "$work/layout:img" "$work/bundle"
  mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/tmp" "$work/bundle/rootfs/etc" "$work/bundle/rootfs/var/www"
  cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$work/bundle/rootfs/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$work/bundle/rootfs/etc/passwd"
  echo 'root:x:0:' > "$work/bundle/rootfs/etc/group"
  umoci repack --image "$work/layout:img" "$work/bundle"
  umoci config --image "$work/layout:img" --config.env PATH=/bin --config.workingdir / --config.cmd /bin/sh --config.cmd -c --config.cmd "$cmd"
  # ctr names an OCI archive's image by its io.containerd.image.name annotation.
  umoci tag --image "$work/layout:img" latest
  python3 - "$work/layout/index.json" "$name" <<'PY'
import json, sys
path, name = sys.argv[1], sys.argv[2]
index = json.load(open(path))
index["manifests"] = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "latest"]
index["manifests"][0]["annotations"]["io.containerd.image.name"] = name
json.dump(index, open(path, "w"))
PY
  tar -C "$work/layout" -cf "$dir/images/$(echo "$name" | tr '/:' '__').tar" .
  rm -rf "$work"
}

start() {
  need
  mkdir -p "$dir/root" "$dir/state" "$dir/cni" "$dir/images" "$dir/logs"
  if [ -S "$sock" ] && ctr --address "$sock" version >/dev/null 2>&1; then
    echo "unix://$sock"; return
  fi
  cat > "$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "cox.local/pause:1"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
TOML
  nohup containerd --config "$dir/config.toml" > "$dir/containerd.log" 2>&1 < /dev/null &
  echo $! > "$dir/containerd.pid"
  for _ in $(seq 1 100); do
    ctr --address "$sock" version >/dev/null 2>&1 && break
    sleep 0.1
  done
  ctr --address "$sock" version >/dev/null || { tail -20 "$dir/containerd.log" >&2; exit 1; }
  [ -f "$dir/images/docker.io_library_busybox_latest.tar" ] || build_image docker.io/library/busybox:latest 'echo busybox' >&2
  [ -f "$dir/images/cox.local_pause_1.tar" ] || build_image cox.local/pause:1 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait; done' >&2
  for tarball in "$dir"/images/*.tar; do ctr_ images import "$tarball" >&2; done
  echo "unix://$sock"
}

stop() {
  if [ -S "$sock" ]; then
    for task in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$task" >/dev/null 2>&1 || true; done
  fi
  if [ -f "$dir/containerd.pid" ]; then
    kill "$(cat "$dir/containerd.pid")" 2>/dev/null || true
    rm -f "$dir/containerd.pid"
  fi
  pkill -f "containerd-shim-runc-v2 .*-address $sock" 2>/dev/null || true
}

case $cmd in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac
