/* Bare-metal start-up for QEMU's mps2-an500: vector table, FPU on, C/C++ initialisation,
   semihosting output and exit. */
#include <stdint.h>
#include <string.h>

extern uint32_t __bss_start__, __bss_end__, __stack_top;
extern void __libc_init_array(void);
int main(void);

static int semihost(int op, const void *arg) {
  register int r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void semihost_write(const char *text) { semihost(0x04, text); } /* SYS_WRITE0 */

void semihost_exit(int code) {
  /* SYS_EXIT_EXTENDED: ADP_Stopped_ApplicationExit with an exit code */
  uint32_t block[2] = {0x20026u, (uint32_t)code};
  semihost(0x20, block);
  for (;;) {
  }
}

void fault_handler(void) {
  semihost_write("FAULT\n");
  semihost_exit(3);
}

void reset_handler(void) {
  memset(&__bss_start__, 0, (size_t)((char *)&__bss_end__ - (char *)&__bss_start__));
  *(volatile uint32_t *)0xE000ED88 |= (0xFu << 20); /* CPACR: CP10, CP11 full access */
  __asm__ volatile("dsb\n isb");
  __libc_init_array();
  semihost_exit(main());
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&__stack_top), reset_handler, fault_handler, fault_handler, fault_handler,
    fault_handler, fault_handler, 0, 0, 0, 0, fault_handler, fault_handler, 0, fault_handler,
    fault_handler,
};

/* newlib's nosys stubs cover the rest; the C++ runtime needs these two. */
void __cxa_pure_virtual(void) { fault_handler(); }
void *__dso_handle = 0;
/* -nostartfiles drops crti/crtn; __libc_init_array still calls these. */
void _init(void) {}
void _fini(void) {}
