#!/bin/sh
# Starts the edge: a route to the cluster's pods (what WireGuard gives a real edge VM), the
# deploy key, HAProxy in master-worker mode, then sshd in the foreground.
#   AUTHORIZED_KEY  edgelb's public deploy key
#   POD_CIDR        the cluster's pod network, e.g. 10.244.0.0/16
#   POD_GATEWAY     the kind node that routes it
set -eu
if [ -n "${POD_CIDR:-}" ] && [ -n "${POD_GATEWAY:-}" ]; then
  ip route replace "$POD_CIDR" via "$POD_GATEWAY"
fi
mkdir -p /etc/ssh/authorized_keys /run/sshd /run/haproxy
printf '%s\n' "${AUTHORIZED_KEY:?set AUTHORIZED_KEY to the edgelb public key}" > /etc/ssh/authorized_keys/root
chmod 644 /etc/ssh/authorized_keys/root
[ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
haproxy -W -S /run/haproxy/master.sock -f /etc/haproxy/haproxy.cfg -p /run/haproxy/haproxy.pid &
exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config
