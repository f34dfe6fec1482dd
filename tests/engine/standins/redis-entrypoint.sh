#!/bin/sh
# Stand-in for the official redis image's entrypoint: run as user redis in /data and, with no
# config file given, turn protected mode off (as the official image does) so peers can connect.
set -eu
if [ "${1:-}" = "redis-server" ]; then
    shift
    chown -R redis:redis /data
    case "${1:-}" in
        *.conf) exec runuser -u redis -- redis-server "$@" ;;
        *) exec runuser -u redis -- redis-server --protected-mode no "$@" ;;
    esac
fi
exec "$@"
