#!/bin/bash
# The test guest boots under calf run and sees what calf gave it.
. "$(dirname "$0")/lib.sh"
need_kvm

boot plain --kernel "$GUEST" --append "ct.mem=256 ct.cpus=1" --timeout 60
is "$status" 1 "bzImage guest passes (status $status, want 1)"
ok "entered through the 64-bit entry" has plain "calf-test: booted via linux64"
ok "guest sees the command line" has plain "cmdline: ct.mem=256 ct.cpus=1"
ok "guest reports PASS" has plain "calf-test: PASS"
[ $status = 1 ] || show plain

boot elf --kernel "$GUEST_ELF" --append "ct.mem=128" -m 128M --timeout 60
is "$status" 1 "ELF guest passes with -m 128M (status $status)"
ok "ELF with a PVH note enters through the PVH entry" has elf "calf-test: booted via pvh"
[ $status = 1 ] || show elf

head -c 4096 /dev/urandom >"$TMP/initrd"
crc=$(crc32_of "$TMP/initrd")
boot pvh --kernel "$GUEST_ELF" --cpus 2 --initrd "$TMP/initrd" --append "ct.cpus=2 ct.initrd=$crc" --timeout 60
is "$status" 1 "PVH: initrd as module 0, memory map, 2 CPUs (status $status)"
[ $status = 1 ] || show pvh

objcopy -R .note "$GUEST_ELF" "$TMP/nopvh.elf"
boot elf64 --kernel "$TMP/nopvh.elf" --append "ct.mem=256" --timeout 60
is "$status" 1 "ELF without a PVH note passes (status $status)"
ok "and enters through the 64-bit entry (e_entry)" has elf64 "calf-test: booted via linux64"

head -c 20000 /dev/urandom >"$TMP/initrd"
crc=$(crc32_of "$TMP/initrd")
boot initrd --kernel "$GUEST" --initrd "$TMP/initrd" --append "ct.initrd=$crc" --timeout 60
is "$status" 1 "initrd arrives intact (crc32 $crc, status $status)"
ok "guest sees the initrd size" has initrd "initrd: 20000 bytes"
[ $status = 1 ] || show initrd

boot badcrc --kernel "$GUEST" --initrd "$TMP/initrd" --append "ct.initrd=12345678" --timeout 60
is "$status" 3 "a wrong initrd checksum makes the guest fail (status $status, want 3)"

boot smp --kernel "$GUEST" --cpus 2 --append "ct.cpus=2" --timeout 60
is "$status" 1 "--cpus 2: guest sees and starts 2 CPUs (status $status)"
ok "MP table and ACPI MADT both list 2 CPUs, both run" has smp "cpus: MP table 2, ACPI MADT 2, running 2"
[ $status = 1 ] || show smp

boot smp4 --kernel "$GUEST" --cpus 4 --append "ct.cpus=4" --timeout 60
is "$status" 1 "--cpus 4: guest starts 4 CPUs (status $status)"

boot big --kernel "$GUEST" -m 4608M --append "ct.mem=4608" --timeout 60
is "$status" 1 "-m 4608M: RAM split around the 4 GiB hole (status $status)"
ok "e820 has the RAM above 4 GiB" has big "0x100000000 +0x60000000 ram"
[ $status = 1 ] || show big

boot report --kernel "$GUEST" --report "$TMP/report.json" --timeout 60
perl -MJSON::PP -e '
    local $/; open my $f, "<", $ARGV[0] or die; my $r = decode_json(<$f>);
    exit !($r->{exit_reason} eq "debug-exit" && $r->{status} == 1 &&
           $r->{vm_exits}{io} > 0 && defined $r->{wall_ms_total} &&
           defined $r->{wall_ms_to_first_instruction} &&
           $r->{console_host_writes} < $r->{console_bytes} / 10)' "$TMP/report.json"
is $? 0 "--report writes one JSON object with exit reason, times, exit counts"
# The VMM's own memory (RSS less resident guest memory; bench/boot holds
# it against issue 3's 8 MiB): a number, and not guest RAM counted in.
perl -MJSON::PP -e '
    local $/; open my $f, "<", $ARGV[0] or die; my $r = decode_json(<$f>);
    exit !($r->{vmm_rss_kib} > 0 && $r->{vmm_rss_kib} < $r->{memory_mib} * 1024 / 4)' "$TMP/report.json"
is $? 0 "--report: vmm_rss_kib is the VMM's own resident memory"
sed 's/^/#   /' "$TMP/report.json"

done_testing
