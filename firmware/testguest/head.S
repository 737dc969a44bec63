/* Entry points of the test guest.  It is linked to run at 1 MiB and can be
 * entered three ways:
 *   +0x000  32-bit Linux boot protocol (code32_start), ESI = boot_params
 *   +0x200  64-bit Linux boot protocol (startup_64), RSI = boot_params
 *   pvh_entry  32-bit PVH entry (Xen ELF note), EBX = hvm_start_info
 * The 32-bit ways build their own identity map of 4 GiB and enter long
 * mode; all three end in guest_main(mode, info). */

#define BOOT_LINUX64 0
#define BOOT_LINUX32 1
#define BOOT_PVH     2

	.section .text.head, "ax"
	.code32
	.globl entry32
entry32:
	cli
	movl	$BOOT_LINUX32, %edi
	jmp	common32

	.org 0x200
	.code64
	.globl entry64
entry64:
	cli
	cld
	movq	%rsi, %r12
	leaq	stack_top(%rip), %rsp	/* the stack is not in .bss */
	call	zero_bss
	movl	$BOOT_LINUX64, %edi
	movq	%r12, %rsi
	call	guest_main
1:	cli
	hlt
	jmp	1b

	.code32
	.globl pvh_entry
pvh_entry:
	cli
	movl	%ebx, %esi
	movl	$BOOT_PVH, %edi
	/* fall through */

/* EDI = mode, ESI = info; flat 32-bit segments, paging off. */
common32:
	cld
	movl	%edi, boot_mode
	movl	%esi, boot_info
	movl	$page_tables, %eax	/* the identity map of 0-4 GiB, below */
	movl	%eax, %cr3
	movl	%cr4, %eax
	orl	$0x20, %eax		/* PAE */
	movl	%eax, %cr4
	movl	$0xc0000080, %ecx	/* EFER.LME */
	rdmsr
	orl	$0x100, %eax
	wrmsr
	lgdt	gdt_desc
	movl	%cr0, %eax
	orl	$0x80000001, %eax	/* PG, PE */
	movl	%eax, %cr0
	ljmp	$0x08, $long64

	.code64
long64:
	movl	$0x10, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	leaq	stack_top(%rip), %rsp	/* PVH promises no stack */
	call	zero_bss
	movl	boot_mode(%rip), %edi
	movl	boot_info(%rip), %esi
	call	guest_main
1:	cli
	hlt
	jmp	1b

/* By quadwords: under an emulating KVM backend (docs/ARCHITECTURE.md,
 * section 8) each iteration of a rep string instruction costs about as
 * much as an instruction, and byte by byte the ~360 KiB of buffers took
 * ~180 ms, most of the guest's boot.  (guest.ld aligns both ends to 8.) */
zero_bss:
	leaq	__bss_start(%rip), %rdi
	leaq	__bss_end(%rip), %rcx
	subq	%rdi, %rcx
	shrq	$3, %rcx
	xorl	%eax, %eax
	rep stosq
	ret

	.section .data
	.balign 8
gdt:
	.quad	0
	.quad	0x00af9b000000ffff	/* 0x08: 64-bit code */
	.quad	0x00cf93000000ffff	/* 0x10: data */
gdt_end:
gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt
boot_mode:
	.long	0
boot_info:
	.long	0

/* 0-4 GiB identity-mapped with 2 MiB pages, laid out by the assembler and
 * loaded with the image: built at run time, its 2048 entries cost ~10 ms
 * at the emulating backend's ring-0 speed.  Nothing writes to it. */
	.section .data.pagetables, "aw"
	.balign 4096
page_tables:
	.quad	pdpt + 3
	.fill	511, 8, 0
pdpt:
	.quad	pd + 3, pd + 0x1000 + 3, pd + 0x2000 + 3, pd + 0x3000 + 3
	.fill	508, 8, 0
pd:
	.set	pde, 0x83		/* present, writable, 2 MiB */
	.rept	2048
	.quad	pde
	.set	pde, pde + 0x200000
	.endr

	.section .stack, "aw", @nobits
	.balign 16
	.space	16384
stack_top:

/* PVH: the Xen ELF note qemu-system-x86_64 -kernel looks for. */
	.section .note.Xen, "a"
	.balign 4
	.long	4		/* name size */
	.long	4		/* desc size */
	.long	18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz	"Xen"
	.long	pvh_entry
	.section .note.GNU-stack, "", @progbits
