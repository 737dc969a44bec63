#!/bin/bash
# -o help and -o ? of create, convert and amend print what qemu-img 7.2
# prints (the format's options, sorted; with a target file name the
# host-file options merged in; amend's own list; errors for unknown
# formats and formats without amend), with the same exit codes; unknown
# -o keys get qemu-img's error.
. "$(dirname "$0")/lib.sh"
need_qemu qemu-img
in_both qemu-img create -q -f qcow2 a.qcow2 1M
in_both qemu-img create -q -f raw r.raw 1M

for h in help '?'; do
    for f in qcow2 qcow raw; do
        same_img "create -f $f -o $h" create -f $f -o "$h"
        same_img "create -f $f -o $h FILE" create -f $f -o "$h" x.$f
        same_img "create -f $f -o $h FILE SIZE" create -f $f -o "$h" x.$f 1M
        same_img "convert -O $f -o $h" convert -O $f -o "$h"
        same_img "convert -O $f -o $h SRC" convert -O $f -o "$h" a.qcow2
        same_img "convert -O $f -o $h SRC DST" convert -O $f -o "$h" a.qcow2 y.$f
        same_img "amend -f $f -o $h" amend -f $f -o "$h"
        same_img "amend -f $f -o $h FILE" amend -f $f -o "$h" a.qcow2
    done
    same_img "amend -o $h (format probed)" amend -o "$h" a.qcow2
done
same_img "create -o help: raw by default" create -o help
same_img "convert -o help: raw by default" convert -f qcow2 -o help
same_img "help among other options" create -f qcow2 -o size=1M,help
same_img "help before other options" create -f qcow2 -o help,size=1M
same_img "help in a second -o" create -f qcow2 -o cluster_size=4k -o help
same_img "convert: help among other options" convert -O qcow2 -o size=1M,help a.qcow2 z.qcow2
same_img "amend: help among other options" amend -o size=1M,help a.qcow2
same_img "amend -o help without a file" amend -o help
same_img "amend -o help of a missing file" amend -o help nonexist.qcow2
same_img "create: unknown format" create -f foo -o help
same_img "convert: unknown format" convert -O foo -o help
same_img "amend: unknown format" amend -f foo -o help
same_img "nothing was created" ls

same_img "create: unknown option" create -f qcow2 -o foo=1 x.qcow2 1M
same_img "convert: unknown option" convert -O qcow2 -o foo=1 a.qcow2 y.qcow2
same_img "amend: unknown option" amend -o foo=1 a.qcow2
same_img "amend: an option only create knows" amend -o cluster_size=4k a.qcow2
done_testing
