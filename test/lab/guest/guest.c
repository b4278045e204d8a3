/* drover lab guest: a tiny multiboot kernel whose only job is to dirty guest RAM at a chosen rate,
 * so migrations can be made to converge or not, and to show it is alive.
 *
 * Command line (libvirt <cmdline>):
 *   mb=N      size of the region to write, MiB; absent or 0 = idle guest (halts between timer ticks)
 *   rate=R    4 KiB pages written per second, paced by a 1 kHz timer; 0 or absent = as fast as it can
 *   base=M    where the region starts, MiB (default 4)
 *   fill=F    write F MiB once at boot (from base), so the guest has that much non-zero RAM to migrate
 *   burst=B   bursty, like a JVM's young generation: write (at rate=) for B ms, then stay quiet for gap= ms,
 *   gap=G     over and over; each burst starts where the last one stopped in the region (mb=, the "young
 *             generation"). burst=0 or absent: write all the time
 *   raise=R   a key pressed on the guest's keyboard (e.g. HMP `sendkey a`) switches the rate to R pages/s
 *             (0 = as fast as it can, bursts off) and the next key back: the dirty rate raised on demand,
 *             for migrations that stall mid-way
 * Heartbeat words at guest-physical 0x8000: [0] seconds since boot, [1] completed passes over the region,
 * [2] pages written. A line "hb=S passes=P pages=N" goes to the first serial port every second. */
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

#define TICKS_PER_S 1000u
#define PIT_HZ 1193182u
#define PAGE_BYTES 4096u
#define MAX_BURST_PAGES 256u
#define HEARTBEAT ((volatile u32 *)0x8000)
#define NO_RAISE 0xffffffffu

volatile u32 timer_ticks;
void timer_isr(void);
void ignore_isr(void);

struct idt_entry {
    u16 offset_low;
    u16 selector;
    u8 reserved;
    u8 type_attr;
    u16 offset_high;
} __attribute__((packed));

struct table_pointer {
    u16 limit;
    u32 base;
} __attribute__((packed));

static struct idt_entry idt[256];
static struct table_pointer idt_pointer;

static inline void port_out(u16 port, u8 value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline u8 port_in(u16 port) {
    u8 value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
    return value;
}

static void serial_init(void) {
    port_out(0x3f9, 0x00);  /* no interrupts */
    port_out(0x3fb, 0x80);  /* divisor latch */
    port_out(0x3f8, 0x01);  /* 115200 baud */
    port_out(0x3f9, 0x00);
    port_out(0x3fb, 0x03);  /* 8N1 */
    port_out(0x3fa, 0xc7);  /* FIFO */
    port_out(0x3fc, 0x03);
}

static void serial_char(char c) {
    for (u32 spins = 0; spins < 100000u && !(port_in(0x3fd) & 0x20); spins++) {
    }
    port_out(0x3f8, (u8)c);
}

static void serial_text(const char *text) {
    while (*text) serial_char(*text++);
}

static void serial_number(u32 value) {
    char digits[12];
    int at = 11;
    digits[at] = 0;
    do {
        digits[--at] = (char)('0' + value % 10u);
        value /= 10u;
    } while (value != 0);
    serial_text(digits + at);
}

/* Value of "key=" (key given with its '='), when it starts a word of the command line. */
static u32 cmdline_number(const char *cmdline, const char *key, u32 fallback) {
    for (const char *at = cmdline; *at; at++) {
        if (at != cmdline && at[-1] != ' ') continue;
        const char *k = key, *v = at;
        while (*k && *v == *k) {
            k++;
            v++;
        }
        if (*k) continue;
        u32 value = 0;
        while (*v >= '0' && *v <= '9') value = value * 10u + (u32)(*v++ - '0');
        return value;
    }
    return fallback;
}

static void idt_set(int vector, void (*handler)(void)) {
    u32 address = (u32)handler;
    idt[vector].offset_low = (u16)(address & 0xffffu);
    idt[vector].selector = 0x08;
    idt[vector].reserved = 0;
    idt[vector].type_attr = 0x8e; /* present, ring 0, 32-bit interrupt gate */
    idt[vector].offset_high = (u16)(address >> 16);
}

static void interrupts_init(void) {
    for (int v = 0; v < 256; v++) idt_set(v, ignore_isr);
    idt_set(0x20, timer_isr);
    idt_pointer.limit = sizeof(idt) - 1;
    idt_pointer.base = (u32)idt;
    __asm__ volatile("lidt %0" : : "m"(idt_pointer));
    /* 8259 PICs: ICW1..ICW4, master at 0x20, slave at 0x28; then unmask IRQ0 only */
    port_out(0x20, 0x11);
    port_out(0xa0, 0x11);
    port_out(0x21, 0x20);
    port_out(0xa1, 0x28);
    port_out(0x21, 0x04);
    port_out(0xa1, 0x02);
    port_out(0x21, 0x01);
    port_out(0xa1, 0x01);
    port_out(0x21, 0xfe);
    port_out(0xa1, 0xff);
    /* PIT channel 0, rate generator, TICKS_PER_S interrupts per second */
    u32 divisor = PIT_HZ / TICKS_PER_S;
    port_out(0x43, 0x34);
    port_out(0x40, (u8)(divisor & 0xffu));
    port_out(0x40, (u8)(divisor >> 8));
}

void guest_main(u32 magic, const u32 *info) {
    const char *cmdline = "";
    if (magic == 0x2BADB002u && (info[0] & 4u)) cmdline = (const char *)info[4];
    u32 region_mib = cmdline_number(cmdline, "mb=", 0);
    u32 pages_per_s = cmdline_number(cmdline, "rate=", 0);
    u32 region_start = cmdline_number(cmdline, "base=", 4) << 20;
    u32 region_pages = region_mib * (1024u * 1024u / PAGE_BYTES);
    u32 fill_pages = cmdline_number(cmdline, "fill=", 0) * (1024u * 1024u / PAGE_BYTES);
    u32 burst_ms = cmdline_number(cmdline, "burst=", 0);
    u32 gap_ms = cmdline_number(cmdline, "gap=", 0);
    u32 raise_rate = cmdline_number(cmdline, "raise=", NO_RAISE);
    u32 calm_rate = pages_per_s, calm_burst_ms = burst_ms;

    serial_init();
    serial_text("drover-lab-guest: cmdline='");
    serial_text(cmdline);
    serial_text("' mb=");
    serial_number(region_mib);
    serial_text(" rate=");
    serial_number(pages_per_s);
    serial_text(" burst=");
    serial_number(burst_ms);
    serial_text(" gap=");
    serial_number(gap_ms);
    serial_text("\n");

    HEARTBEAT[0] = 0;
    HEARTBEAT[1] = 0;
    HEARTBEAT[2] = 0;
    for (u32 p = 0; p < fill_pages; p++)
        for (u32 word = 0; word < PAGE_BYTES / 4; word += 64) /* one word per cache line is enough to be non-zero */
            ((volatile u32 *)(region_start + p * PAGE_BYTES))[word] = 0x9e3779b9u * (p + word + 1);
    interrupts_init();
    __asm__ volatile("sti");

    u32 next_beat = TICKS_PER_S, last_tick = timer_ticks, credit = 0, page = 0, raised = 0, last_key_tick = 0;
    for (;;) {
        u32 now = timer_ticks;
        /* the keyboard controller's output buffer (polled once a tick; its interrupt stays masked) */
        if (raise_rate != NO_RAISE && now != last_key_tick) {
            last_key_tick = now;
            if (port_in(0x64) & 1u) {
                u8 scancode = port_in(0x60);
                if (!(scancode & 0x80u)) { /* a key going down (set 1), not its release */
                    raised = !raised;
                    pages_per_s = raised ? raise_rate : calm_rate;
                    burst_ms = raised ? 0 : calm_burst_ms;
                    credit = 0;
                    last_tick = now;
                    serial_text(raised ? "raised\n" : "calm\n");
                }
            }
        }
        if (now >= next_beat) {
            next_beat += TICKS_PER_S;
            HEARTBEAT[0]++;
            serial_text("hb=");
            serial_number(HEARTBEAT[0]);
            serial_text(" passes=");
            serial_number(HEARTBEAT[1]);
            serial_text(" pages=");
            serial_number(HEARTBEAT[2]);
            serial_text("\n");
        }
        if (region_pages == 0) {
            __asm__ volatile("hlt");
            continue;
        }
        if (burst_ms != 0 && now % (burst_ms + gap_ms) >= burst_ms) {
            /* quiet phase: nothing written, nothing banked */
            last_tick = now;
            credit = 0;
            __asm__ volatile("hlt");
            continue;
        }
        u32 burst = MAX_BURST_PAGES;
        if (pages_per_s != 0) {
            /* credit in page-ticks: each tick earns pages_per_s, a page costs TICKS_PER_S; at most ~1 s banked */
            credit += (now - last_tick) * pages_per_s;
            last_tick = now;
            if (credit > pages_per_s + TICKS_PER_S) credit = pages_per_s + TICKS_PER_S;
            burst = credit / TICKS_PER_S;
            if (burst == 0) {
                __asm__ volatile("hlt");
                continue;
            }
            if (burst > MAX_BURST_PAGES) burst = MAX_BURST_PAGES;
            credit -= burst * TICKS_PER_S;
        }
        for (u32 i = 0; i < burst; i++) {
            *(volatile u32 *)(region_start + page * PAGE_BYTES) = now + i;
            HEARTBEAT[2]++;
            if (++page == region_pages) {
                page = 0;
                HEARTBEAT[1]++;
            }
        }
    }
}
