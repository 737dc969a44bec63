#!/bin/bash
# Linux's virtio-net driver on calf's virtio-net with user-mode
# networking (libslirp), proven by the kernel alone (no userspace here):
# the small kernel (CONFIG_VIRTIO_NET, CONFIG_IP_PNP_DHCP) boots with
# ip=dhcp and its log must show "IP-Config: Complete" with the address
# 10.0.2.15 from slirp's DHCP server at 10.0.2.2, gateway 10.0.2.2 and
# DNS 10.0.2.3 (the default restrict=off, as QEMU's: with restrict=on
# slirp's DHCP gives neither), and the MAC calf gave the device.  The boot ends
# in a panic for want of a root filesystem (--no-reboot).  Also: --net
# tap without the privilege fails with one clear message, a hostfwd port
# in use too, and bad --net values are refused before anything starts.
. "$(dirname "$0")/lib.sh"
need_kvm

boot badnet --kernel "$GUEST" --net user,hostfwd=tcp::70000-:22 --timeout 30
[ "$status" = 2 ] && has_err badnet "calf: --net: invalid host forwarding rule 'tcp::70000-:22'"
is $? 0 "a bad hostfwd rule is refused with one message (status $status)" || show badnet

# a hostfwd port someone else holds
inuse=$TMP/inuse.port
perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 1) or die;
    open F, ">", $ARGV[0]; print F $s->sockport, "\n"; close F; sleep 60' "$inuse" &
holder=$!
for ((i = 0; i < 100; i++)); do [ -s "$inuse" ] && break; sleep 0.1; done
p=$(cat "$inuse")
boot busy --kernel "$GUEST" --net "user,hostfwd=tcp::$p-:22" --timeout 30
kill $holder 2>/dev/null; wait $holder 2>/dev/null
[ "$status" = 2 ] && has_err busy "calf: --net user: could not set up host forwarding rule 'tcp:127.0.0.1:$p-10.0.2.15:22': Address already in use" &&
    [ "$(wc -l <"$TMP/busy.err")" = 1 ]
is $? 0 "a hostfwd port in use: one message naming the rule (status $status)" || show busy

# tap: as a user without CAP_NET_ADMIN (root drops it with setpriv)
if command -v setpriv >/dev/null && [ -e /dev/net/tun ]; then
    t0=$(date +%s%N)
    setpriv --inh-caps=-all --bounding-set=-all "$CALF" run --kernel "$GUEST" \
        --net tap,ifname=calftest0 --timeout 30 >"$TMP/tap.out" 2>"$TMP/tap.err" </dev/null
    status=$?
    [ "$status" = 2 ] && grep -q "calf: --net tap,ifname=calftest0: cannot attach to a tap: Operation not permitted (creating a tap needs CAP_NET_ADMIN" "$TMP/tap.err" &&
        [ "$(wc -l <"$TMP/tap.err")" -le 2 ]
    is $? 0 "--net tap without CAP_NET_ADMIN: one clear error (status $status)" || show tap
else
    skip "no setpriv or no /dev/net/tun here" "--net tap without CAP_NET_ADMIN: one clear error"
fi

need_linux
boot dhcp --kernel "$LINUX_KERNEL" -m 256M --net user \
    --append "$LINUX_APPEND ip=dhcp" --no-reboot --expect "Kernel panic" --timeout 900
tr -d '\r' <"$TMP/dhcp.out" | grep -aE "virtio-pci|IP-Config|device=|nameserver|bootserver" | sed 's/^/#   /'
is "$status" 0 "the kernel boots with virtio-net and ip=dhcp to the end (status $status)"
ok "IP-Config: Complete" grep -aq "IP-Config: Complete" "$TMP/dhcp.out"
ok "slirp's DHCP at 10.0.2.2 hands out 10.0.2.15" \
    grep -aq "IP-Config: Got DHCP answer from 10.0.2.2, my address is 10.0.2.15" "$TMP/dhcp.out"
ok "device eth0 with calf's MAC, ipaddr 10.0.2.15/24, gateway 10.0.2.2" \
    grep -aq "device=eth0, hwaddr=52:54:00:12:34:56, ipaddr=10.0.2.15, mask=255.255.255.0, gw=10.0.2.2" "$TMP/dhcp.out"
ok "DNS server 10.0.2.3" grep -aq "nameserver0=10.0.2.3" "$TMP/dhcp.out"
done_testing
