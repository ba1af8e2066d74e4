#!/usr/bin/env bash
# Stop what env-up.sh started, by pid only.
PW_ENV=${PW_ENV:-/tmp/pw-env}
for f in "$PW_ENV/ovs/vswitchd.pid" "$PW_ENV/ovs/ovsdb.pid" "$PW_ENV/docker/docker.pid"; do
  [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
done
exit 0
