/* A boot sector for guest-tests/vga-bios.t: through the VGA BIOS that
 * SeaBIOS ran (vgabios-stdvga), it finds a 640x480x32 VBE mode with a
 * linear framebuffer (int 10h 4F00h/4F01h), prints the mode's
 * framebuffer address next to BAR0 of PCI 1234:1111 (the two must agree:
 * the VGA BIOS found its device), sets the mode (4F02h), draws through
 * unreal mode into the framebuffer (a red 64x64 square at 256,256 and
 * the last pixel 0x123456) and ends the VM through port 0x501.
 * Exit codes: 0 drawn, 1 no VBE, 2 no such mode, 3 mode set failed,
 * 4 no PCI 1234:1111. */

#define INFO     0x8000      /* VbeInfoBlock */
#define MODEINFO 0x8200      /* ModeInfoBlock */
#define DEBUG_EXIT 0x501

    .code16
    .text
    .globl _start
_start:
    ljmp $0, $1f
1:  xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7c00, %sp
    cld
    movl $0x32454256, INFO   /* "VBE2" */
    mov $0x4f00, %ax
    mov $INFO, %di
    int $0x10
    mov $1, %bl
    cmp $0x004f, %ax
    jne exit
    lfs INFO + 14, %si       /* the mode list */
next_mode:
    mov %fs:(%si), %cx
    add $2, %si
    mov $2, %bl
    cmp $0xffff, %cx
    je exit
    mov $0x4f01, %ax
    mov $MODEINFO, %di
    int $0x10
    cmp $0x004f, %ax
    jne next_mode
    cmpw $640, MODEINFO + 18
    jne next_mode
    cmpw $480, MODEINFO + 20
    jne next_mode
    cmpb $32, MODEINFO + 25
    jne next_mode
    testb $0x80, MODEINFO    /* linear framebuffer available */
    jz next_mode
    mov %cx, mode

    mov $msg_lfb, %si
    call puts
    movl MODEINFO + 40, %eax
    call puthex
    /* BAR0 of the first 1234:1111 on bus 0, through ports 0xCF8/0xCFC */
    movl $0x80000000, %ebx
1:  mov %ebx, %eax
    mov $0xcf8, %dx
    outl %eax, %dx
    mov $0xcfc, %dx
    inl %dx, %eax
    cmpl $0x11111234, %eax
    je 2f
    add $0x800, %ebx
    cmp $0x80010000, %ebx
    jb 1b
    mov $4, %bl
    jmp exit
2:  lea 0x10(%ebx), %eax
    mov $0xcf8, %dx
    outl %eax, %dx
    mov $0xcfc, %dx
    inl %dx, %eax
    and $0xfffffff0, %eax
    push %eax
    mov $msg_bar, %si
    call puts
    pop %eax
    call puthex
    mov $msg_crlf, %si
    call puts
    xor %al, %al             /* sercon holds the last character back */
    call putc

    mov $0x4f02, %ax
    mov mode, %bx
    or $0x4000, %bx          /* linear framebuffer */
    int $0x10
    mov $3, %bl
    cmp $0x004f, %ax
    jne exit

    /* Unreal mode: GS gets a 4 GiB limit from a flat descriptor. */
    cli
    lgdt gdt_desc
    mov %cr0, %eax
    or $1, %al
    mov %eax, %cr0
    mov $8, %bx
    mov %bx, %gs
    and $0xfe, %al
    mov %eax, %cr0
    xor %ax, %ax
    mov %ax, %gs
    movl MODEINFO + 40, %edi
    push %edi
    add $(256 * 640 + 256) * 4, %edi
    mov $64, %dx             /* rows */
3:  mov $64, %cx
4:  addr32 movl $0xff0000, %gs:(%edi)
    add $4, %edi
    loop 4b
    add $(640 - 64) * 4, %edi
    dec %dx
    jnz 3b
    pop %edi
    addr32 movl $0x123456, %gs:(640 * 480 - 1) * 4(%edi)
    xor %bl, %bl
exit:
    mov %bl, %al
    mov $DEBUG_EXIT, %dx
    out %al, %dx
1:  cli
    hlt
    jmp 1b

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

/* eax as 8 hex digits */
puthex:
    mov $8, %cx
1:  rol $4, %eax
    push %eax
    and $0xf, %al
    add $'0', %al
    cmp $'9', %al
    jbe 2f
    add $('a' - '9' - 1), %al
2:  call putc
    pop %eax
    loop 1b
    ret

gdt:
    .quad 0
    .quad 0x00cf92000000ffff /* flat 4 GiB data */
gdt_desc:
    .word 15
    .long gdt
mode:     .word 0
msg_lfb:  .asciz "calf-vga: lfb "
msg_bar:  .asciz " bar0 "
msg_crlf: .asciz "\r\n"

    .org 510
    .word 0xaa55
