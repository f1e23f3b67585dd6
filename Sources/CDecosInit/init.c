// The pre-runtime constructor. Runs before Swift's runtime, which needs /proc to find itself:
// as PID 1 in an initramfs nothing is mounted yet, and without /proc the runtime dies at start.
// Then PID 1 forks: it stays here as a small init loop, and the child becomes the node.
#define _GNU_SOURCE
#include "CDecosInit.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

static pid_t node_pid;

static void say(const char *a, const char *b) {
    (void)!write(2, a, strlen(a));
    (void)!write(2, b, strlen(b));
}

static void forward(int sig) { if (node_pid > 0) kill(node_pid, sig); }

/// PID 1 stays this small C loop and runs the node (the Swift runtime and everything above it) as
/// its child: a crash anywhere in the node — a Swift trap in a service — ends that process, not
/// init, and the node is started again. Only the child returns from here, into Swift's main.
/// Power requests are the node's to carry out (reboot(2) needs no PID 1); signals meant for init
/// (SIGTERM, SIGPWR, Ctrl-Alt-Del's SIGINT) are passed on to it.
static void keep_node_running(void) {
    reboot(RB_DISABLE_CAD);  // Ctrl-Alt-Del becomes SIGINT to us, passed to the node
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    sigemptyset(&sa.sa_mask);
    int sigs[] = { SIGTERM, SIGINT, SIGPWR, SIGHUP };
    int delay = 1, starts = 0;
    for (;;) {
        struct timespec started;
        clock_gettime(CLOCK_BOOTTIME, &started);
        pid_t pid = fork();
        if (pid == 0) {
            for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], SIG_DFL);
            // A restarted node measures its start from now, not from the machine's first /init.
            if (starts > 0) started_ns = (int64_t)started.tv_sec * 1000000000 + started.tv_nsec;
            return;  // the node
        }
        starts++;
        if (pid < 0) { say("decos-init: fork failed: ", strerror(errno)); sleep(5); continue; }
        node_pid = pid;
        for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
        int status = 0;
        for (;;) {
            pid_t done = waitpid(-1, &status, 0);  // orphans of the whole system end up here too
            if (done == node_pid) break;
            if (done < 0 && errno != EINTR && errno != ECHILD) sleep(1);
        }
        node_pid = 0;
        // What the dead node started (its supervised processes) goes with it: the next node starts
        // its own. kill(-1) reaches every process but init itself.
        kill(-1, SIGKILL);
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        char why[64];
        if (WIFSIGNALED(status)) snprintf(why, sizeof why, "was killed by signal %d%s", WTERMSIG(status),
                                          WTERMSIG(status) == SIGILL || WTERMSIG(status) == SIGTRAP ? " (a Swift trap)" : "");
        else snprintf(why, sizeof why, "exited with status %d", WEXITSTATUS(status));
        struct timespec now;
        clock_gettime(CLOCK_BOOTTIME, &now);
        if (now.tv_sec - started.tv_sec > 30) delay = 1;  // it ran a while: not a crash loop
        char again[64];
        snprintf(again, sizeof again, "; starting it again in %d s\n", delay);
        say("\ndecos-init: the node process ", why);
        say(again, "");
        sleep(delay);
        if (delay < 16) delay *= 2;
    }
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
    keep_node_running();
}

int decos_early_init_ran(void) { return ran; }
int64_t decos_init_started_ns(void) { return started_ns; }
const char *decos_early_init_errors(void) { return errors; }

int decos_finit_module(int fd, const char *params) {
    return (int)syscall(SYS_finit_module, fd, params, 0);
}

int decos_reboot(int cmd) { return reboot(cmd); }

int decos_cpus_allowed(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    return CPU_COUNT(&set);
}

int decos_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
const int decos_rb_power_off = RB_POWER_OFF, decos_rb_autoboot = RB_AUTOBOOT;

/* The Swift concurrency runtime's hook; its real type is a swiftcall function pointer. */
extern const void *swift_task_enqueueGlobal_hook;

int decos_install_enqueue_global_hook(const void *hook) {
    if (swift_task_enqueueGlobal_hook != NULL) return 0;
    swift_task_enqueueGlobal_hook = hook;
    return 1;
}

void decos_remove_enqueue_global_hook(const void *hook) {
    if (swift_task_enqueueGlobal_hook == hook) swift_task_enqueueGlobal_hook = NULL;
}

/* The runtime's SerialExecutorRef; { NULL, 0 } is the generic executor. */
typedef struct { void *identity; uintptr_t implementation; } decos_serial_executor_ref;
extern __attribute__((swiftcall)) void swift_job_run(void *job, decos_serial_executor_ref executor);

void decos_run_job_on_generic_executor(void *job) {
    swift_job_run(job, (decos_serial_executor_ref){ NULL, 0 });
}
