/* drover lab guest: multiboot (v1) entry point. 32-bit protected mode, flat segments, no paging.
 * Sets up a stack and a GDT of its own, then calls guest_main(magic, info). */
#define MULTIBOOT_MAGIC 0x1BADB002
#define MULTIBOOT_FLAGS 0x00000003   /* align modules, ask for the memory map */

        .section .multiboot, "a"
        .align 4
        .long MULTIBOOT_MAGIC
        .long MULTIBOOT_FLAGS
        .long -(MULTIBOOT_MAGIC + MULTIBOOT_FLAGS)

        .text
        .globl _start
_start:
        cli
        movl    $boot_stack_end, %esp
        lgdt    gdt_pointer
        ljmp    $0x08, $reload_segments
reload_segments:
        movw    $0x10, %cx
        movw    %cx, %ds
        movw    %cx, %es
        movw    %cx, %fs
        movw    %cx, %gs
        movw    %cx, %ss
        pushl   %ebx                    /* multiboot information structure */
        pushl   %eax                    /* multiboot magic from the loader */
        call    guest_main
halt_forever:
        cli
        hlt
        jmp     halt_forever

/* Timer interrupt (PIC IRQ0 remapped to vector 0x20): count milliseconds and acknowledge. */
        .globl  timer_isr
timer_isr:
        pushl   %eax
        incl    timer_ticks
        movb    $0x20, %al
        outb    %al, $0x20
        popl    %eax
        iret

/* Any other vector: ignore. */
        .globl  ignore_isr
ignore_isr:
        iret

        .data
        .align 8
gdt_table:
        .quad   0x0000000000000000      /* null */
        .quad   0x00CF9A000000FFFF      /* 0x08 code, base 0, limit 4 GiB */
        .quad   0x00CF92000000FFFF      /* 0x10 data, base 0, limit 4 GiB */
gdt_pointer:
        .word   gdt_pointer - gdt_table - 1
        .long   gdt_table

        .bss
        .align 16
boot_stack:
        .skip   16384
boot_stack_end:

        .section .note.GNU-stack, "", @progbits
