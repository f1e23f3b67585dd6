#ifndef CDECOSINIT_H
#define CDECOSINIT_H

#include <stdint.h>

/// What the pre-runtime constructor did: 1 when this process is PID 1 and it ran the early mounts.
int decos_early_init_ran(void);
/// CLOCK_BOOTTIME in nanoseconds when the constructor ran (before the Swift runtime): /init's start.
int64_t decos_init_started_ns(void);
/// Errors of the early mounts, one per line ("" when none).
const char *decos_early_init_errors(void);

/// finit_module(2): load a kernel module from an open file.
int decos_finit_module(int fd, const char *params);
/// reboot(2) with one of the RB_* commands; returns only on failure.
int decos_reboot(int cmd);
/// The RB_* commands, which Swift does not import from <sys/reboot.h> as constants.
extern const int decos_rb_power_off, decos_rb_autoboot, decos_rb_disable_cad;

/// As PID 1 a fatal signal (a Swift trap is SIGILL or SIGTRAP) would panic the kernel: log it on the
/// console, wait `delay_seconds`, sync and reboot instead.
void decos_install_fatal_handlers(int delay_seconds);

#endif
