#ifndef CPCI_H
#define CPCI_H

#include <stddef.h>

/// The vendor and device names of a PCI device, from libpci's ID database (pci.ids), for
/// `/os/devices` in the hosted build. libpci is opened at run time: the static appliance has no
/// shared libraries to open and shows the IDs sysfs gives. Returns 0 with both names written
/// (either may be empty when the database does not know it), -1 when libpci is not available.
int cpci_names(unsigned vendor, unsigned device, char *vendor_name, size_t vendor_len,
               char *device_name, size_t device_len);

#endif
