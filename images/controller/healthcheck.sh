#!/bin/bash
# Health check of the controller container: GET /healthz, healthy on 200.
# /healthz answers 200 only when the API is up and the Docker engine
# answers, and needs no API key. Plain bash (/dev/tcp): the runtime images
# have no curl or wget.
#
#   bento-healthcheck [PORT]     (default 7470)
set -u
port="${1:-7470}"
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
read -r -t 4 _proto status _rest <&3 || exit 1
if [ "$status" = 200 ]; then
  exit 0
fi
echo "healthz: HTTP $status" >&2
exit 1
