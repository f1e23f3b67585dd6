#ifndef CDECOSINIT_H
#define CDECOSINIT_H

#include <stdint.h>

/// 1 when this process is the node under the machine's init: PID 1 ran the early mounts and forked
/// it (PID 1 itself stays in the constructor's loop, restarting the node when it dies).
int decos_early_init_ran(void);
/// CLOCK_BOOTTIME in nanoseconds when the constructor ran (before the Swift runtime): /init's start.
int64_t decos_init_started_ns(void);
/// Errors of the early mounts, one per line ("" when none).
const char *decos_early_init_errors(void);

/// finit_module(2): load a kernel module from an open file.
int decos_finit_module(int fd, const char *params);
/// pipe2(2) with O_CLOEXEC: both ends closed at exec from birth, so no child spawned meanwhile by
/// another thread inherits them (Glibc's module does not import pipe2, a GNU extension).
int decos_pipe_cloexec(int fds[2]);
/// How many CPUs this process may run on (sched_getaffinity(2) and CPU_COUNT, GNU extensions
/// Glibc's module does not import); 0 if it cannot tell, as on a kernel built for more than the
/// 1,024 CPUs a cpu_set_t holds (the caller then keeps SwiftNIO's own count).
int decos_cpus_allowed(void);
/// reboot(2) with one of the RB_* commands; returns only on failure.
int decos_reboot(int cmd);
/// The RB_* commands, which Swift does not import from <sys/reboot.h> as constants.
extern const int decos_rb_power_off, decos_rb_autoboot;

/// Makes `hook` the Swift runtime's swift_task_enqueueGlobal_hook: where tasks go to run. Returns 0
/// if a hook was already set. Set directly, not through dlsym, which finds nothing in a static binary.
int decos_install_enqueue_global_hook(const void *hook);
/// Removes `hook` if it is the one installed: tasks go to Swift's own pool again.
void decos_remove_enqueue_global_hook(const void *hook);
/// Runs a task's job as Swift's global executor does (on the generic executor). A job run as the
/// event loop's own serial executor could never switch to an actor or back on its thread: every
/// such switch would be one more trip through the loop's queue.
void decos_run_job_on_generic_executor(void *job);

#endif

/// The CPU's time-stamp counter (rdtsc), for timing calls where the kernel keeps time with it
/// (ServiceKernel's CallClock); 0 on CPUs without one here.
static inline uint64_t decos_cycles(void) {
#if defined(__x86_64__)
    return __builtin_ia32_rdtsc();
#else
    return 0;
#endif
}
