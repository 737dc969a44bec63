# Helpers of the NBD tests (tests/nbd-*.t), over tests/lib.sh: start a
# server in the background (killed at exit) and wait until it listens.
#   . "$(dirname "$0")/nbd-lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CALF_NBD=$CALF_BUILD/calf-nbd
NBD_RAW=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/nbd-raw.py
NBD_EVIL=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/nbd-evil-server.py

# wait_listen SOCK|PORT: until the Unix socket exists or the TCP port on
# 127.0.0.1 accepts (5 s at most)
wait_listen() {
    local i
    for i in $(seq 100); do
        if [[ $1 == /* ]]; then
            [ -S "$1" ] && return 0
        else
            (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        fi
        sleep 0.05
    done
    return 1
}

# serve SOCK|PORT CMD...: runs the server CMD in the background with its
# output in $TMP/server.log, sets SERVER_PID, waits for it to listen.
# (A TCP probe is a connection: serve TCP servers with -t or -e 0.)
serve() {
    local where=$1; shift
    [[ $where == /* ]] && rm -f "$where"
    "$@" >"$TMP/server.log" 2>&1 &
    SERVER_PID=$!
    at_exit "kill $SERVER_PID 2>/dev/null"
    wait_listen "$where"
}

# stop_server: ends the server SERVER_PID and waits for it
stop_server() {
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    return 0
}

# free_port: a TCP port on 127.0.0.1 nobody listens on now
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# vm_hwm PID: the peak resident memory of PID in KiB
vm_hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null; }
