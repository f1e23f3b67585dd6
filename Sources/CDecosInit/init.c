// The pre-runtime constructor. Runs before Swift's runtime, which needs /proc to find itself:
// as PID 1 in an initramfs nothing is mounted yet, and without /proc the runtime dies at start.
#define _GNU_SOURCE
#include "CDecosInit.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int ran;
static int64_t started_ns;
static char errors[1024];

static void note_error(const char *what, const char *target) {
    size_t used = strlen(errors);
    snprintf(errors + used, sizeof errors - used, "%s %s: %s\n", what, target, strerror(errno));
}

/// Mounts `fstype` on `target`, creating it; a filesystem already there (EBUSY) is fine.
static void early_mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data) {
    if (mkdir(target, 0755) != 0 && errno != EEXIST) { note_error("mkdir", target); return; }
    if (mount(source, target, fstype, flags, data) != 0 && errno != EBUSY) note_error("mount", target);
}

__attribute__((constructor(101)))
static void decos_early_init(void) {
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    started_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    if (getpid() != 1) return;
    ran = 1;
    early_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    early_mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    early_mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    early_mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
    early_mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    // The kernel gives init the console only if /dev/console existed in the initramfs; make sure.
    int fd = open("/dev/console", O_RDWR | O_NOCTTY);
    if (fd >= 0) {
        for (int i = 0; i < 3; i++) dup2(fd, i);
        if (fd > 2) close(fd);
    } else {
        note_error("open", "/dev/console");
    }
    setenv("PATH", "/bin:/sbin:/usr/bin:/usr/sbin", 0);
    setenv("HOME", "/", 0);
}

int decos_early_init_ran(void) { return ran; }
int64_t decos_init_started_ns(void) { return started_ns; }
const char *decos_early_init_errors(void) { return errors; }

int decos_finit_module(int fd, const char *params) {
    return (int)syscall(SYS_finit_module, fd, params, 0);
}

int decos_reboot(int cmd) { return reboot(cmd); }
const int decos_rb_power_off = RB_POWER_OFF, decos_rb_autoboot = RB_AUTOBOOT, decos_rb_disable_cad = RB_DISABLE_CAD;

static int fatal_delay;

static void write_str(const char *s) { (void)!write(2, s, strlen(s)); }

static void on_fatal(int sig) {
    // Only async-signal-safe calls from here on.
    write_str("\ndecos: fatal signal ");
    write_str(sig == SIGILL ? "SIGILL (a Swift trap)" : sig == SIGTRAP ? "SIGTRAP (a Swift trap)" :
              sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : sig == SIGFPE ? "SIGFPE" : "SIGABRT");
    write_str(" in PID 1; rebooting after the delay set by decos.panic_delay\n");
    struct timespec t = { .tv_sec = fatal_delay, .tv_nsec = 0 };
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {}
    sync();
    reboot(RB_AUTOBOOT);
    for (;;) pause();
}

void decos_install_fatal_handlers(int delay_seconds) {
    fatal_delay = delay_seconds;
    static char stack[64 * 1024];
    stack_t ss = { .ss_sp = stack, .ss_size = sizeof stack, .ss_flags = 0 };
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    int sigs[] = { SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGABRT };
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
}
