/* Copied to TRAMP_ADDR (a page below 1 MiB, cpus.c) and started there by
 * INIT/SIPI in real mode: each AP records the CPUID leaves that describe
 * the topology, as it sees them, in its slot (indexed by its initial
 * APIC ID) of the record area at TRAMP_ADDR + AP_RECORDS, marks its flag
 * byte and halts for good.  The BSP reads the same leaves itself and
 * checks them all (cpus.c). */
#define AP_RECORDS 0x1000  /* cpus.c: struct cpu_record[64] there */
#define RECORD_SIZE 256

	.section .rodata
	.code16
	.globl ap_tramp, ap_tramp_end, ap_tramp_flags

/* One leaf: EAX/EBX/ECX/EDX to slot + off. */
.macro leaf l, sub, off
	movl	$\l, %eax
	movl	$\sub, %ecx
	cpuid
	movl	%eax, \off(%di)
	movl	%ebx, \off+4(%di)
	movl	%ecx, \off+8(%di)
	movl	%edx, \off+12(%di)
.endm

ap_tramp:
	cli
	movw	%cs, %ax
	movw	%ax, %ds
	movl	$1, %eax
	cpuid
	shrl	$24, %ebx
	andw	$63, %bx		/* 64 slots: cpus.c checks the real ID */
	movw	%bx, %di
	shlw	$8, %di
	addw	$AP_RECORDS, %di
	leaf	0, 0, 0
	leaf	1, 0, 16
	leaf	4, 0, 32
	leaf	0xb, 0, 48
	leaf	0xb, 1, 64
	leaf	0x1f, 0, 80
	leaf	0x1f, 1, 96
	leaf	0x80000000, 0, 112
	leaf	0x80000008, 0, 128
	leaf	0x8000001e, 0, 144
	movl	$1, %eax
	cpuid
	shrl	$24, %ebx
	movb	$1, (ap_tramp_flags - ap_tramp)(%bx)
1:	hlt
	jmp	1b
	.balign 16
ap_tramp_flags:
	.space 256
ap_tramp_end:
	.section .note.GNU-stack, "", @progbits
