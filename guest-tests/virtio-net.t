#!/bin/bash
# virtio-net end to end with the test guest (firmware/testguest/
# virtio-net.c, ct.vnet=PORT): it ARPs for its gateway, sends a UDP
# datagram to the gateway's PORT, waits for one on its port 7777 and
# sends that back prefixed with "echo:".  A host peer (perl, a UDP socket)
# receives the first, sends its own, and must get the echo: payloads are
# checked on both sides.
#  - user mode (libslirp, the default restrict=off): the gateway 10.0.2.2 is the host's
#    127.0.0.1, and the host reaches the guest through hostfwd=udp;
#  - tap: in a network namespace the test makes itself (root, unshare -n),
#    a tap calf0 with 10.0.3.1/24 on the host side; the guest is
#    10.0.3.15 and answers the host kernel's ARP itself.  Skipped where
#    namespaces or taps cannot be made.
. "$(dirname "$0")/lib.sh"
need_kvm
need_cmd perl

passed() {
    [ "$status" = 1 ] && has "$1" "calf-test: PASS" &&
        ! grep -qE "Sanitizer|runtime error" "$TMP/$1.err"
}

# peer.pl PORTFILE OUT BINDADDR TOADDR TOPORT: a UDP socket on BINDADDR
# (its port into PORTFILE); the guest's datagram, then ours to
# TOADDR:TOPORT once a second until its echo comes (at most 600 s).
cat >"$TMP/peer.pl" <<'PERL'
use strict; use warnings; use IO::Socket::INET; use IO::Select; use Socket;
my ($portfile, $out, $bind, $toaddr, $toport) = @ARGV;
my $s = IO::Socket::INET->new(LocalAddr => $bind, LocalPort => 0, Proto => 'udp') or die "peer: $!";
open my $o, '>', $out or die; $o->autoflush(1);
open my $pf, '>', "$portfile.tmp" or die; print $pf $s->sockport, "\n"; close $pf;
rename "$portfile.tmp", $portfile;
my $sel = IO::Select->new($s);
my $end = time + 600; my $buf;
while (time < $end) {
    next unless $sel->can_read(1);
    $s->recv($buf, 2048); print $o "from-guest: $buf\n"; last;
}
my $msg = "calf-host-to-guest-$$";
print $o "sent: $msg\n";
my $to = sockaddr_in($toport, inet_aton($toaddr));
while (time < $end) {
    $s->send($msg, 0, $to);
    next unless $sel->can_read(1);
    $s->recv($buf, 2048); print $o "back: $buf\n";
    last if $buf eq "echo:$msg";
}
PERL

wait_file() { local i; for ((i = 0; i < 100; i++)); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }

# checks NAME PEEROUT GWIP
checks() {
    local sent
    passed "$1" && has "$1" "calf-test: virtio-net: ok"
    is $? 0 "$1: the guest ARPs, sends and echoes through virtio-net (status $status)" || show "$1"
    grep -q "^from-guest: calf-guest-to-host$" "$2"
    is $? 0 "$1: the host socket gets the guest's datagram, payload intact" || sed 's/^/#   /' "$2"
    sent=$(sed -n 's/^sent: //p' "$2")
    has "$1" "got UDP to port 7777: '$sent'" && grep -q "^back: echo:$sent$" "$2"
    is $? 0 "$1: the guest gets the host's datagram ($sent) and the host its echo" || sed 's/^/#   /' "$2"
    tr -d '\r' <"$TMP/$1.out" | grep "virtio-net" | sed 's/^/# /'
}

# user mode
fport=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Proto => "udp")->sockport')
perl "$TMP/peer.pl" "$TMP/port" "$TMP/peer.out" 127.0.0.1 127.0.0.1 "$fport" &
peer=$!
wait_file "$TMP/port"
boot user --kernel "$GUEST" --net "user,hostfwd=udp::$fport-:7777" \
    --append "ct.vnet=$(cat "$TMP/port")" --timeout 300
kill $peer 2>/dev/null; wait $peer 2>/dev/null
checks user "$TMP/peer.out"
has user "ARP: 10.0.2.2 is at 0x52 0x55 0xa 0x0 0x2 0x2"
is $? 0 "user: slirp's gateway answers ARP with its MAC 52:55:0a:00:02:02"

# tap, in a namespace of our own
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && command -v ip >/dev/null &&
   [ -e /dev/net/tun ] && unshare -n true 2>/dev/null; then
    TMP=$TMP CALF=$CALF GUEST=$GUEST unshare -n bash -c '
        ip link set lo up && ip tuntap add calf0 mode tap && ip addr add 10.0.3.1/24 dev calf0 &&
            ip link set calf0 up || exit 90
        perl "$TMP/peer.pl" "$TMP/port2" "$TMP/peer2.out" 10.0.3.1 10.0.3.15 7777 &
        peer=$!
        for ((i = 0; i < 100; i++)); do [ -s "$TMP/port2" ] && break; sleep 0.1; done
        "$CALF" run --kernel "$GUEST" --net tap,ifname=calf0 \
            --append "ct.vnet=$(cat "$TMP/port2") ct.vnetip=10.0.3.15 ct.vnetgw=10.0.3.1" \
            --timeout 300 >"$TMP/tap.out" 2>"$TMP/tap.err" </dev/null
        rc=$?
        kill $peer 2>/dev/null
        exit $rc'
    status=$?
    if [ $status = 90 ]; then
        skip "no tap could be made in a new network namespace" \
            "tap: the guest ARPs, sends and echoes" "tap: the host socket gets the guest's datagram" \
            "tap: the guest gets the host's datagram"
    else
        echo "# tap: status $status"
        checks tap "$TMP/peer2.out"
    fi
else
    skip "network namespaces cannot be made here (needs root and unshare -n)" \
        "tap: the guest ARPs, sends and echoes" "tap: the host socket gets the guest's datagram" \
        "tap: the guest gets the host's datagram"
fi
done_testing
