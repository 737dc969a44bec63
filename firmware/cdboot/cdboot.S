/* A no-emulation El Torito boot image for the CD boot test.  The BIOS
 * loads it (4 virtual sectors: all 2048 bytes) at 0x7C00 with the CD
 * drive in DL.  It asks for the int 13h extensions (AH=41h) and the drive
 * parameters (AH=48h: a CD has 2048-byte sectors), reads the first
 * CD_BLOCKS blocks of the disc with extended reads (AH=42h), sums them
 * as 32-bit little-endian words, prints the sum through int 10h teletype
 * (SeaBIOS's sercon puts it on the serial port) and ends the VM through
 * the debug-exit port: 0 when every call worked.  The test sums the same
 * bytes of the ISO on the host, so wrong data cannot pass.
 *
 * Exit codes (written to 0x501): 0 pass, 4 no extensions, 5 a read
 * failed, 6 the sector size is not 2048. */

#define CD_BLOCKS   64          /* 128 KiB: two reads of 64 KiB */
#define BUF_SEG0    0x1000
#define BUF_SEG1    0x2000
#define DEBUG_EXIT  0x501

    .code16
    .section .text
    .globl _start
_start:
    ljmp $0, $start             /* some BIOSes enter at 07C0:0000 */
start:
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

    mov $0x41, %ah              /* extensions present? */
    mov $0x55aa, %bx
    mov drive, %dl
    int $0x13
    mov $4, %al
    jc fail
    cmp $0xaa55, %bx
    jne fail

    movw $0x1e, params          /* drive parameters: bytes per sector */
    mov $0x48, %ah
    mov drive, %dl
    mov $params, %si
    int $0x13
    mov $6, %al
    jc fail
    cmpw $2048, params + 24
    jne fail

    movw $BUF_SEG0, dap_seg
    movl $0, dap_lba
    call read_half
    movw $BUF_SEG1, dap_seg
    movl $(CD_BLOCKS / 2), dap_lba
    call read_half

    xor %eax, %eax
    mov $BUF_SEG0, %bx
    call sum64k
    mov $BUF_SEG1, %bx
    call sum64k
    push %eax
    mov $msg_sum, %si
    call puts
    pop %eax
    call puthex32
    mov $msg_pass, %si
    call puts
    xor %al, %al
    jmp exit

fail:
    push %ax
    mov $msg_fail, %si
    call puts
    pop %ax
    push %ax
    add $'0', %al
    call putc
    mov $msg_nl, %si
    call puts
    pop %ax
exit:
    /* SeaBIOS's sercon holds back what it was last given until more
     * comes: a NUL pushes it out and prints nothing itself. */
    push %ax
    xor %al, %al
    call putc
    pop %ax
    mov $DEBUG_EXIT, %dx
    out %al, %dx
1:  hlt
    jmp 1b

/* Half the blocks into dap_seg:0 with one extended read. */
read_half:
    mov $0x42, %ah
    mov drive, %dl
    mov $dap, %si
    int $0x13
    mov $5, %al
    jc fail
    ret

/* eax += the 64 KiB at bx:0 as dwords */
sum64k:
    push %es
    mov %bx, %es
    xor %si, %si
    mov $0x4000, %cx
1:  addl %es:(%si), %eax
    add $4, %si
    loop 1b
    pop %es
    ret

/* si: NUL-terminated string to the screen */
puts:
    lodsb
    test %al, %al
    jz 1f
    call putc
    jmp puts
1:  ret

putc:
    push %si
    mov $0x0e, %ah
    mov $0x0007, %bx
    int $0x10
    pop %si
    ret

/* eax as 8 hex digits */
puthex32:
    mov $8, %cx
1:  rol $4, %eax
    push %eax
    and $0x0f, %al
    add $'0', %al
    cmp $'9', %al
    jbe 2f
    add $('a' - '0' - 10), %al
2:  push %cx
    call putc
    pop %cx
    pop %eax
    loop 1b
    ret

msg_hello: .asciz "calf-cdboot: booted from the CD\r\n"
msg_sum:   .asciz "calf-cdboot: sum "
msg_pass:  .asciz "\r\ncalf-cdboot: PASS\r\n"
msg_fail:  .asciz "calf-cdboot: FAIL "
msg_nl:    .asciz "\r\n"

    .balign 4
drive:  .byte 0
    .balign 4
dap:    .byte 16, 0
        .word CD_BLOCKS / 2     /* blocks */
        .word 0                 /* offset */
dap_seg: .word 0
dap_lba: .quad 0
    .balign 4
params: .space 0x1e
