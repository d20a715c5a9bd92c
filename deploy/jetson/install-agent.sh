#!/bin/sh
# Prepare a Jetson (JetPack 4.6, Docker and nvidia-container-runtime preinstalled) for gearcam and join
# it to a k3s cluster as an agent. Run on the Jetson, from a checkout of gearcam:
#   sudo K3S_URL=https://<server>:6443 K3S_TOKEN=<server's /var/lib/rancher/k3s/server/node-token> \
#        deploy/jetson/install-agent.sh
# Steps: NVIDIA as Docker's default runtime (keeps an existing daemon.json as .bak), the k3s agent
# config (Docker, node label), then k3s' installer in agent mode. Safe to run again.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
: "${K3S_URL:?set K3S_URL=https://<k3s server>:6443}"
: "${K3S_TOKEN:?set K3S_TOKEN to the server's node-token}"

if ! command -v nvidia-container-runtime >/dev/null; then
  echo "install-agent: nvidia-container-runtime is missing; install JetPack's nvidia-docker2 / nvidia-container-toolkit" >&2
  exit 1
fi
if ! cmp -s "$here/daemon.json" /etc/docker/daemon.json; then
  [ -f /etc/docker/daemon.json ] && cp /etc/docker/daemon.json /etc/docker/daemon.json.bak
  install -m 0644 "$here/daemon.json" /etc/docker/daemon.json
  systemctl restart docker
fi
docker info --format '{{.DefaultRuntime}}' | grep -qx nvidia || {
  echo "install-agent: Docker's default runtime is not nvidia after the restart; check /etc/docker/daemon.json" >&2
  exit 1
}
install -d -m 0755 /etc/rancher/k3s
install -m 0644 "$here/k3s-agent.yaml" /etc/rancher/k3s/config.yaml
# The installer reads K3S_URL and K3S_TOKEN from the environment and starts k3s-agent.
curl -sfL https://get.k3s.io | INSTALL_K3S_EXEC=agent sh -
echo "install-agent: done; on the server, \`kubectl get nodes --show-labels\` lists $(hostname) with gearcam.io/device=jetson-nano"
