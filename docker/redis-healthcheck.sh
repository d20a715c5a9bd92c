#!/bin/sh
# Healthy when Redis answers PING on loopback (with the password, if one is set).
if [ -n "${REDIS_PASSWORD:-}" ]; then
  REDISCLI_AUTH="$REDIS_PASSWORD"
  export REDISCLI_AUTH
fi
redis-cli -h 127.0.0.1 -p "${REDIS_PORT:-6379}" ping | grep -q PONG
