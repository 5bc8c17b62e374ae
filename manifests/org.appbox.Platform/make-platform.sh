#!/bin/sh
# Builds org.appbox.Platform from a subset of the host's /usr: a shell, a few
# core utilities and exactly the shared libraries they load. It runs inside the
# build sandbox, where the host's /usr is visible read-only and /app is the
# output, which becomes /usr for the apps that use this runtime.
set -eu

programs="sh dash cat echo ls id uname readlink printf env true false sleep
head tail wc mkdir rm cp ln mv basename dirname tr sort date touch chmod grep sed"
loader=/lib64/ld-linux-x86-64.so.2

# Copies a host file to the same place under /app, without the /usr prefix
# (the runtime is mounted at /usr, and /lib, /lib64 and /bin point into it).
copy_file() {
    case $1 in
        /usr/*) rel=${1#/usr/} ;;
        *) rel=${1#/} ;;
    esac
    mkdir -p "/app/$(dirname "$rel")"
    cp -L "$1" "/app/$rel"
}

mkdir -p /app/bin
for program in $programs; do
    path=/usr/bin/$program
    if [ ! -e "$path" ]; then
        echo "make-platform: $path is missing on this host" >&2
        exit 1
    fi
    # -P keeps links such as sh -> dash as links.
    cp -P "$path" /app/bin/
    for library in $("$loader" --list "$path" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p'); do
        copy_file "$library"
    done
done
copy_file "$loader"
