#!/bin/sh
# The shared library must export dw_ symbols only.
set -eu
lib=$1
bad=$(nm -D --defined-only "$lib" | awk '{print $NF}' | grep -v '^dw_' || true)
if [ -n "$bad" ]; then
    echo "check-symbols: $lib exports symbols without the dw_ prefix:" >&2
    echo "$bad" >&2
    exit 1
fi
echo "check-symbols: $lib exports $(nm -D --defined-only "$lib" | grep -c ' dw_') dw_ symbols and nothing else"
