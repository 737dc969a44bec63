/* A boot sector and a small second stage, for the firmware boot tests.
 * The firmware loads sector 0 at 0x7C00 and jumps there with the boot
 * drive in DL.  Stage 1 loads stage 2 (the sectors right after it) with
 * a CHS read (int 13h AH=02h).  Stage 2 checks the LBA extensions
 * (AH=41h), reads PAT_SECTORS sectors from LBA PAT_LBA once with one
 * extended read (AH=42h) and once sector by sector with CHS reads
 * through the geometry AH=08h reports, sums each copy as 32-bit
 * little-endian words, prints both sums through int 10h teletype
 * (AH=0Eh; SeaBIOS's sercon puts it on the serial port) and ends the
 * VM through the debug-exit port 0x501: 0 when both reads agree.
 * Before that it pokes fw_cfg the way a careless guest would
 * (fw_cfg_check).  The test compares the printed sums with the host's sum of the same
 * bytes, so a read that returns the wrong data cannot pass.
 *
 * Exit codes (written to 0x501): 0 pass, 2 the two reads differ, 3 stage
 * 2 did not load, 4 no LBA extensions, 5 extended read failed, 6 CHS
 * read failed, 7 no geometry, 8 fw_cfg misbehaved, 9 int 15h AH=86h
 * refused to wait.  (The wait, 20 ms, needs the RTC's periodic
 * interrupt: SeaBIOS counts its ticks; without them it never returns.) */

#define PAT_LBA      64
#define PAT_SECTORS  64          /* 32 KiB: crosses a 63-sector track */
#define LBA_BUF_SEG  0x1000      /* 0x10000: the extended read's copy */
#define CHS_BUF_SEG  0x2000      /* 0x20000: the CHS reads' copy */
#define DEBUG_EXIT   0x501
#define FW_CFG_SEL   0x510
#define FW_CFG_DATA  0x511
#define FW_CFG_DMA_HI 0x514
#define FW_CFG_DMA_LO 0x518

    .code16
    .section .text
    .globl _start
_start:
    ljmp $0, $stage1             /* some BIOSes enter at 07C0:0000 */
stage1:
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7c00, %sp
    cld
    sti
    mov %dl, drive
    mov $msg_hello, %si
    call puts
    /* Stage 2: CHS cylinder 0, head 0, sectors 2.. (LBA 1..) */
    mov $(0x0200 | STAGE2_SECTORS), %ax
    mov $0x0002, %cx
    xor %dh, %dh
    mov drive, %dl
    mov $stage2, %bx
    int $0x13
    mov $3, %al
    jc fail
    jmp stage2

/* si: NUL-terminated string to the screen */
puts:
    lodsb
    test %al, %al
    jz 1f
    call putc
    jmp puts
1:  ret

putc:
    pusha
    mov $0x0e, %ah
    mov $0x0007, %bx
    int $0x10
    popa
    ret

/* al: exit code; prints it, then ends the VM */
fail:
    push %ax
    mov $msg_fail, %si
    call puts
    pop %ax
    push %ax
    add $'0', %al
    call putc
    mov $msg_crlf, %si
    call puts
    pop %ax
exit:
    /* SeaBIOS's sercon holds back the last character written until the
     * next one: a NUL pushes it out and prints nothing itself. */
    push %ax
    xor %al, %al
    call putc
    pop %ax
    mov $DEBUG_EXIT, %dx
    out %al, %dx
1:  cli
    hlt
    jmp 1b

drive:     .byte 0x80
msg_hello: .asciz "calf-boot: stage 1\r\n"
msg_fail:  .asciz "calf-boot: FAIL "
msg_crlf:  .asciz "\r\n"

    .org 510
    .word 0xaa55

/* ---- stage 2, at 0x7E00 ---- */
stage2:
    mov $msg_stage2, %si
    call puts
    call fw_cfg_check
    call wait_check
    /* Extensions present and the packet interface (CX bit 0) on? */
    mov $0x41, %ah
    mov $0x55aa, %bx
    mov drive, %dl
    int $0x13
    jc no_ext
    cmp $0xaa55, %bx
    jne no_ext
    test $1, %cx
    jnz read_lba
no_ext:
    mov $4, %al
    jmp fail

read_lba:
    mov $0x42, %ah
    mov drive, %dl
    mov $dap, %si
    int $0x13
    mov $5, %al
    jc fail
    mov $LBA_BUF_SEG, %ax
    call sum_buffer
    mov %eax, lba_sum

    /* Geometry: DH max head, CL[5:0] sectors per track */
    mov $0x08, %ah
    mov drive, %dl
    xor %di, %di
    mov %di, %es
    int $0x13
    mov $7, %al
    jc fail
    xor %ax, %ax
    mov %ax, %es
    mov %cl, %al
    and $0x3f, %al
    jz fail7
    mov %ax, spt
    movzbw %dh, %ax
    inc %ax
    mov %ax, heads
    mov $msg_geom, %si
    call puts
    mov heads, %ax
    call puthex16
    mov $msg_spt, %si
    call puts
    mov spt, %ax
    call puthex16
    mov $msg_crlf, %si
    call puts

    /* One sector at a time: c = lba / (heads*spt), h = lba / spt % heads,
     * s = lba % spt + 1. */
    movw $PAT_LBA, lba
    movw $CHS_BUF_SEG, bufseg
chs_loop:
    mov lba, %ax
    xor %dx, %dx
    divw spt
    inc %dx
    mov %dx, %cx                 /* sector, 1-based */
    xor %dx, %dx
    divw heads                   /* ax = cylinder, dx = head */
    mov %al, %ch
    shl $6, %ah
    or %ah, %cl                  /* cylinder bits 8-9 */
    mov %dl, %dh
    mov drive, %dl
    mov bufseg, %es
    xor %bx, %bx
    mov $0x0201, %ax
    int $0x13
    mov $0, %ax
    mov %ax, %es
    mov $6, %al
    jc fail
    addw $(512 >> 4), bufseg
    incw lba
    cmpw $(PAT_LBA + PAT_SECTORS), lba
    jb chs_loop
    mov $CHS_BUF_SEG, %ax
    call sum_buffer
    mov %eax, chs_sum

    mov $msg_lba, %si
    call puts
    mov lba_sum, %eax
    call puthex32
    mov $msg_chs, %si
    call puts
    mov chs_sum, %eax
    call puthex32
    mov $msg_crlf, %si
    call puts
    mov lba_sum, %eax
    cmp chs_sum, %eax
    mov $2, %al
    jne fail
    mov $msg_pass, %si
    call puts
    xor %al, %al
    jmp exit
fail7:
    mov $7, %al
    jmp fail

/* The VMM's fw_cfg as a guest may misuse it: the signature through the
 * data port, a DMA read into RAM, a DMA read aimed outside RAM (must
 * come back with the error bit), a request block outside RAM (must be
 * ignored, the device still working afterwards). */
fw_cfg_check:
    mov $FW_CFG_SEL, %dx
    xor %ax, %ax                 /* FW_CFG_SIGNATURE */
    out %ax, %dx
    mov $FW_CFG_DATA, %dx
    mov $4, %cx
    mov $sigbuf, %di
1:  in %dx, %al
    stosb
    loop 1b
    cmpl $0x554d4551, sigbuf     /* "QEMU" */
    jne fw_cfg_bad
    mov $0xf0000000, %eax        /* not RAM: the PCI hole */
    call fw_cfg_dma_dir
    testb $1, dma_req + 3        /* be32 control: error bit in byte 3 */
    jz fw_cfg_bad
    xor %eax, %eax               /* request block outside RAM: ignored */
    mov $FW_CFG_DMA_HI, %dx
    out %eax, %dx
    mov $0x000000f0, %eax        /* be32 0xf0000000 */
    mov $FW_CFG_DMA_LO, %dx
    out %eax, %dx
    mov $dirbuf, %eax
    call fw_cfg_dma_dir
    cmpl $0, dma_req             /* done: control cleared */
    jne fw_cfg_bad
    cmpl $0, dirbuf              /* be32 file count, not zero */
    je fw_cfg_bad
    mov $msg_fwcfg, %si
    jmp puts
fw_cfg_bad:
    mov $8, %al
    jmp fail

/* int 15h AH=86h: wait CX:DX microseconds. */
wait_check:
    mov $0x86, %ah
    xor %cx, %cx
    mov $20000, %dx
    int $0x15
    mov $9, %al
    jc fail
    mov $msg_wait, %si
    jmp puts

/* eax: where a DMA read of the first 16 bytes of the file directory goes */
fw_cfg_dma_dir:
    bswap %eax
    mov %eax, dma_req + 12
    movl $0, dma_req + 8
    movl $0x10000000, dma_req + 4          /* be32 16 */
    movl $0x0a001900, dma_req              /* be32 0x0019000a: select, read */
    xor %eax, %eax
    mov $FW_CFG_DMA_HI, %dx
    out %eax, %dx
    mov $dma_req, %eax
    bswap %eax
    mov $FW_CFG_DMA_LO, %dx
    out %eax, %dx
    ret

/* ax: segment of PAT_SECTORS sectors; returns their 32-bit sum in eax */
sum_buffer:
    push %es
    mov %ax, %es
    xor %eax, %eax
    xor %si, %si
    mov $(PAT_SECTORS * 512 / 4), %cx
1:  addl %es:(%si), %eax
    add $4, %si
    loop 1b
    pop %es
    ret

puthex32:
    push %eax
    shr $16, %eax
    call puthex16
    pop %eax
puthex16:
    mov $4, %cx
1:  rol $4, %ax
    push %ax
    and $0x0f, %al
    add $'0', %al
    cmp $'9', %al
    jbe 2f
    add $('a' - '0' - 10), %al
2:  push %cx
    call putc
    pop %cx
    pop %ax
    loop 1b
    ret

    .balign 4
dap:                             /* the disk address packet */
    .byte 16, 0
    .word PAT_SECTORS
    .word 0, LBA_BUF_SEG         /* offset, segment */
    .quad PAT_LBA
dma_req: .long 0, 0, 0, 0       /* be32 control, be32 length, be64 address */
sigbuf:  .long 0
dirbuf:  .long 0, 0, 0, 0
lba_sum: .long 0
chs_sum: .long 0
spt:     .word 0
heads:   .word 0
lba:     .word 0
bufseg:  .word 0
msg_stage2: .asciz "calf-boot: stage 2\r\n"
msg_geom:   .asciz "calf-boot: geometry heads "
msg_spt:    .asciz " sectors "
msg_lba:    .asciz "calf-boot: lba sum "
msg_chs:    .asciz " chs sum "
msg_pass:   .asciz "calf-boot: PASS\r\n"
msg_fwcfg:  .asciz "calf-boot: fw_cfg ok\r\n"
msg_wait:   .asciz "calf-boot: int 15h wait ok\r\n"
    .balign 512
stage2_end:

STAGE2_SECTORS = (stage2_end - stage2) / 512
