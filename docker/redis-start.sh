#!/bin/sh
# Start redis-server with RedisAI and RedisGears loaded, configured from the environment.
#
# The configuration goes to a file only this user can read, so the password (REDIS_PASSWORD)
# never shows on a command line (`ps`) and the module arguments stay in one place:
#   REDIS_BIND (127.0.0.1), REDIS_PORT (6379), REDIS_PASSWORD (unset: no AUTH, loopback only),
#   REDIS_MAXMEMORY (unset: none), REDIS_APPENDONLY (yes)
#   AI_THREADS_PER_QUEUE (1), AI_INTRA_OP_PARALLELISM, AI_INTER_OP_PARALLELISM (unset: backend default),
#   AI_MODEL_EXECUTION_TIMEOUT (unset: 5000 ms, ONNX only)  -- RedisAI load-time arguments
#   GEARS_EXECUTION_THREADS (3)                                 -- RedisGears' worker threads
# Extra arguments are passed on to redis-server (e.g. --loglevel verbose).
set -eu

conf="${REDIS_CONF:-/tmp/gearcam-redis.conf}"
bind="${REDIS_BIND:-127.0.0.1}"
if [ -z "${REDIS_PASSWORD:-}" ] && [ "$bind" != "127.0.0.1" ]; then
  echo "gearcam-redis: refusing to listen on $bind without a password; set REDIS_PASSWORD" >&2
  exit 2
fi

ai_args="BACKENDSPATH ${AI_BACKENDSPATH} THREADS_PER_QUEUE ${AI_THREADS_PER_QUEUE:-1}"
[ -n "${AI_INTRA_OP_PARALLELISM:-}" ] && ai_args="$ai_args INTRA_OP_PARALLELISM $AI_INTRA_OP_PARALLELISM"
[ -n "${AI_INTER_OP_PARALLELISM:-}" ] && ai_args="$ai_args INTER_OP_PARALLELISM $AI_INTER_OP_PARALLELISM"
[ -n "${AI_MODEL_EXECUTION_TIMEOUT:-}" ] && ai_args="$ai_args MODEL_EXECUTION_TIMEOUT $AI_MODEL_EXECUTION_TIMEOUT"

umask 077
{
  echo "bind $bind"
  echo "port ${REDIS_PORT:-6379}"
  echo "protected-mode yes"
  echo "dir ${REDIS_DIR:-/data}"
  echo "appendonly ${REDIS_APPENDONLY:-yes}"
  [ -n "${REDIS_MAXMEMORY:-}" ] && echo "maxmemory $REDIS_MAXMEMORY"
  [ -n "${REDIS_PASSWORD:-}" ] && echo "requirepass $REDIS_PASSWORD"
  echo "loadmodule ${AI_MODULE} $ai_args"
  # CreateVenv 0 / DownloadDeps 0: the Python packages are installed in the image (offline nodes).
  echo "loadmodule ${GEARS_MODULE} Plugin ${GEARS_PLUGIN} PythonInstallationDir ${GEARS_PYTHON_DIR}" \
       "CreateVenv 0 DownloadDeps 0 ExecutionThreads ${GEARS_EXECUTION_THREADS:-3}"
} > "$conf"

exec redis-server "$conf" "$@"
