#include "CPCI.h"

#ifdef DECOS_STATIC_VERBS
// The static build (make static defines DECOS_STATIC_VERBS): no dlopen, no libpci.
int cpci_names(unsigned vendor, unsigned device, char *vendor_name, size_t vendor_len,
               char *device_name, size_t device_len) {
    (void)vendor; (void)device; (void)vendor_name; (void)vendor_len; (void)device_name; (void)device_len;
    return -1;
}
#else
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <pci/pci.h>

// libpci, opened once. Only the ID database is used: pci_init (which probes access methods and
// whose error handler exits the process) is never called; pci_lookup_name loads pci.ids itself.
static pthread_once_t once = PTHREAD_ONCE_INIT;
// pci_lookup_name keeps a cache that is not safe to share between threads.
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct pci_access *access_;
static char *(*lookup)(struct pci_access *, char *, int, int, ...);

// pci_init would install these; without it they are NULL and the lookup calls them.
static void quiet(char *msg, ...) { (void)msg; }
static __attribute__((noreturn)) void fatal(char *msg, ...) { (void)msg; abort(); }  // only for flags we never pass

static void load(void) {
    void *lib = dlopen("libpci.so.3", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return;
    struct pci_access *(*alloc)(void) = (struct pci_access *(*)(void))dlsym(lib, "pci_alloc");
    lookup = (char *(*)(struct pci_access *, char *, int, int, ...))dlsym(lib, "pci_lookup_name");
    if (!alloc || !lookup) return;
    struct pci_access *a = alloc();
    a->warning = quiet;
    a->debug = quiet;
    a->error = fatal;
    access_ = a;
}

static void name(int flags, unsigned vendor, unsigned device, char *out, size_t len) {
    char buf[256];
    char *found = lookup(access_, buf, sizeof buf, flags | PCI_LOOKUP_NO_NUMBERS, vendor, device);
    if (len == 0) return;
    strncpy(out, found ? found : "", len - 1);
    out[len - 1] = 0;
}

int cpci_names(unsigned vendor, unsigned device, char *vendor_name, size_t vendor_len,
               char *device_name, size_t device_len) {
    pthread_once(&once, load);
    if (!access_) return -1;
    pthread_mutex_lock(&lock);
    name(PCI_LOOKUP_VENDOR, vendor, device, vendor_name, vendor_len);
    name(PCI_LOOKUP_DEVICE, vendor, device, device_name, device_len);
    pthread_mutex_unlock(&lock);
    return 0;
}
#endif
