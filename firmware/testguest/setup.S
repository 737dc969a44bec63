/* The real-mode part of a bzImage: the setup header (payload sizes come
 * from the linker script), and for loaders that start the kernel in real
 * mode at setup+0x200 (QEMU's -kernel, GRUB's linux16) a stub that does
 * what Linux's setup code does: build a zero page 4 KiB above this area
 * (the e820 table would overwrite this code if built in place) with the
 * setup header the loader filled in and the BIOS e820 map, enter protected
 * mode and jump to the 32-bit entry with ESI pointing at it. */
#define ZP 0x1000
	.section .setup, "a"
	.code16
setup_start:
	.org	0x1f1
	.byte	1			/* setup_sects */
	.word	0			/* root_flags */
	.long	_syssize		/* payload size in 16-byte units */
	.word	0			/* ram_size */
	.word	0xffff			/* vid_mode: normal */
	.word	0			/* root_dev */
	.word	0xaa55			/* boot_flag */
	.byte	0xeb, hdr_end - setup_start - 0x202 /* jump over the header */
	.ascii	"HdrS"
	.word	0x020f			/* boot protocol 2.15 */
	.long	0			/* realmode_swtch */
	.word	0x1000			/* start_sys_seg */
	.word	0			/* kernel_version */
	.byte	0			/* type_of_loader */
	.byte	0x01			/* loadflags: LOADED_HIGH */
	.word	0x8000			/* setup_move_size */
	.long	0x100000		/* code32_start */
	.long	0, 0			/* ramdisk_image, ramdisk_size */
	.long	0			/* bootsect_kludge */
	.word	0			/* heap_end_ptr */
	.byte	0, 0			/* ext_loader_ver, ext_loader_type */
	.long	0			/* cmd_line_ptr */
	.long	0x7fffffff		/* initrd_addr_max */
	.long	0x200000		/* kernel_alignment */
	.byte	0			/* relocatable_kernel: no */
	.byte	21			/* min_alignment */
	.word	0x0001			/* xloadflags: XLF_KERNEL_64 */
	.long	4095			/* cmdline_size */
	.long	0			/* hardware_subarch */
	.quad	0			/* hardware_subarch_data */
	.long	0, 0			/* payload_offset, payload_length */
	.quad	0			/* setup_data */
	.quad	0x100000		/* pref_address */
	.long	_init_size		/* init_size */
	.long	0			/* handover_offset */
	.long	0			/* kernel_info_offset */
hdr_end:
	cli
	cld
	movw	%ds, %ax
	movw	%ax, %es
	movw	$ZP, %di
	movw	$4096, %cx
	xorb	%al, %al
	rep stosb
	movw	$0x1f1, %si
	movw	$(ZP + 0x1f1), %di
	movw	$(hdr_end - setup_start - 0x1f1), %cx
	rep movsb
	xorl	%ebx, %ebx
	movw	$(ZP + 0x2d0), %di	/* boot_params.e820_table */
	xorw	%bp, %bp
1:	movl	$0xe820, %eax
	movl	$0x534d4150, %edx	/* "SMAP" */
	movl	$20, %ecx
	int	$0x15
	jc	2f
	cmpl	$0x534d4150, %eax
	jne	2f
	incw	%bp
	addw	$20, %di
	testl	%ebx, %ebx
	jz	2f
	cmpw	$128, %bp
	jb	1b
2:	movw	%bp, %ax
	movb	%al, (ZP + 0x1e8)	/* boot_params.e820_entries */
	xorl	%eax, %eax
	movw	%ds, %ax
	shll	$4, %eax
	leal	ZP(%eax), %esi		/* the zero page, linear */
	addl	$(gdt16 - setup_start), %eax
	movl	%eax, (gdt16_desc - setup_start + 2)
	lgdtl	(gdt16_desc - setup_start)
	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	movw	$0x18, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	%ax, %fs
	movw	%ax, %gs
	ljmpl	$0x10, $0x100000	/* entry32 */

	.balign	8
gdt16:
	.quad	0
	.quad	0
	.quad	0x00cf9b000000ffff	/* 0x10: flat 32-bit code */
	.quad	0x00cf93000000ffff	/* 0x18: flat data */
gdt16_desc:
	.word	gdt16_desc - gdt16 - 1
	.long	0			/* base: set at run time */
	.org	0x3ff
	.byte	0
	.section .note.GNU-stack, "", @progbits
