#!/bin/sh
# The image's entrypoint: `IMAGE monitor|dispatch|resources|review|console [serve options]`
# runs `lifeline-<name> serve`; any other command (e.g. `lifeline-dispatch list`) runs as given.
set -eu
case "${1:-}" in
  monitor | dispatch | resources | review | console)
    service="$1"
    shift
    exec "lifeline-$service" serve "$@"
    ;;
  "")
    echo "usage: IMAGE monitor|dispatch|resources|review|console, or a command such as lifeline-dispatch --help" >&2
    exit 64
    ;;
  *)
    exec "$@"
    ;;
esac
