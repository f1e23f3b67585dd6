#ifndef CXDP_H
#define CXDP_H

#include <stddef.h>
#include <stdint.h>

/// AF_XDP for the XDP data plane, on the kernel's own interfaces (bpf(2), AF_XDP sockets): no
/// libbpf or libxdp, so nothing more to link statically and no BPF object file to compile. The
/// XDP program is sixteen instructions, assembled here.
/// Every function returns 0 (or a pointer) on success, and on failure fills `err`.

/// The XDP program on one interface: frames of `ethertype` go to the AF_XDP socket of the queue
/// they arrived on (if there is one), everything else to the kernel's stack as if no program were
/// there. Attached through a BPF link: it leaves the interface when `dx_filter_detach` closes the
/// link or when the process that made it dies — never left behind by a crash.
typedef struct dx_filter dx_filter;
dx_filter *dx_filter_attach(int ifindex, uint16_t ethertype, int queues, char *err, size_t errlen);
void dx_filter_detach(dx_filter *f);
/// "native" (the driver runs it) or "generic" (the kernel runs it after the driver, slower).
const char *dx_filter_mode(dx_filter *f);

/// An AF_XDP socket on one queue of an interface, its frames in `umem` (page-aligned, the caller's,
/// registered with the kernel here and outliving the socket), cut into frames of `frame_size`.
/// Zero-copy where the driver supports it, else copy mode (veth, most virtio); the rings hold
/// `ring` entries each (a power of two). The error, if both fail, is copy mode's.
typedef struct dx_socket dx_socket;
dx_socket *dx_socket_open(dx_filter *f, int ifindex, int queue, void *umem, uint64_t umem_size, uint32_t frame_size,
                          uint32_t ring, char *err, size_t errlen);
void dx_socket_close(dx_socket *s);
/// 1 if the socket is in zero-copy mode, 0 in copy mode.
int dx_socket_zerocopy(dx_socket *s);

/// Received frames, at most `max`: their offsets in the UMEM and lengths. The frames are the
/// caller's until given back with `dx_fill`.
int dx_rx(dx_socket *s, uint64_t *addrs, uint32_t *lens, int max);
/// Gives frames (offsets in the UMEM) to the kernel to receive into; returns how many it took.
int dx_fill(dx_socket *s, const uint64_t *addrs, int n);
/// Queues frames to send and wakes the kernel; returns how many were queued (the ring may be full).
int dx_tx(dx_socket *s, const uint64_t *addrs, const uint32_t *lens, int n);
/// Has the kernel take what the send ring holds (a copy-mode socket sends only when asked, a
/// batch at a time); -1 on an error other than "no room now".
int dx_kick(dx_socket *s);
/// Frames whose sending completed, at most `max`: theirs again.
int dx_completed(dx_socket *s, uint64_t *addrs, int max);
/// Waits up to `timeout_ms` for a frame to receive or for `wake_fd` (an eventfd, or -1) to be
/// written; 1 if there is a frame, 0 if not, -1 on error. A wake is consumed here.
int dx_wait(dx_socket *s, int wake_fd, int timeout_ms);
/// What the kernel dropped on the socket: frames dropped for other reasons, for a full receive
/// ring, for an empty fill ring, and descriptors it found invalid.
int dx_stats(dx_socket *s, uint64_t out[4]);
/// An eventfd for `dx_wait`'s `wake_fd` (-1 with errno on failure), and writing it.
int dx_wake_open(void);
void dx_wake(int fd);

#endif
