#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include "tsr_passthrough.h"

#include <errno.h>
#include <fuse3/fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

// The kernel ABI (include/uapi/linux/fuse.h, protocol 7.40+); libfuse 3.14's copy predates it.
enum { OP_OPEN = 14, OP_INIT = 26 };
#define INIT_EXT (1u << 30)
#define INIT2_PASSTHROUGH (1u << 5) /* FUSE_PASSTHROUGH is bit 37 of the 64-bit flags */
#define FOPEN_PASSTHROUGH_FLAG (1u << 7)
#define MARKER (1ull << 63)

struct in_header { uint32_t len, opcode; uint64_t unique, nodeid; uint32_t uid, gid, pid; uint16_t total_extlen, padding; };
struct init_in { uint32_t major, minor, max_readahead, flags, flags2, unused[11]; };
struct out_header { uint32_t len; int32_t error; uint64_t unique; };
struct init_out {
    uint32_t major, minor, max_readahead, flags;
    uint16_t max_background, congestion_threshold;
    uint32_t max_write, time_gran;
    uint16_t max_pages, map_alignment;
    uint32_t flags2, max_stack_depth;
    uint16_t request_timeout, unused[11];
};
struct open_out { uint64_t fh; uint32_t open_flags; int32_t backing_id; };
struct backing_map { int32_t fd; uint32_t flags; uint64_t padding; };
#define DEV_IOC_BACKING_OPEN _IOW(229, 1, struct backing_map)
#define DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

// Per connection (by /dev/fuse fd): what INIT said, and the OPEN requests awaiting their reply.
#define MAX_FD 4096
#define MAX_OPENS 1024
struct conn {
    atomic_int state;          // -1 before INIT, 0 not offered, 1 active
    atomic_int offered;        // the kernel offered passthrough in INIT
    uint64_t init_unique;
    pthread_mutex_t lock;
    uint64_t opens[MAX_OPENS]; // uniques of OPEN requests in flight (0 = free)
};
static struct conn *conns[MAX_FD];
static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;

static struct conn *conn_for(int fd) {
    if (fd < 0 || fd >= MAX_FD) return NULL;
    return conns[fd];
}

static ssize_t hook_read(int fd, void *buf, size_t len, void *userdata) {
    (void)userdata;
    ssize_t n = read(fd, buf, len);
    struct conn *c = conn_for(fd);
    if (n < (ssize_t)sizeof(struct in_header) || !c) return n;
    struct in_header in;
    memcpy(&in, buf, sizeof in);
    if (in.opcode == OP_INIT && n >= (ssize_t)(sizeof in + sizeof(struct init_in))) {
        struct init_in init;
        memcpy(&init, (char *)buf + sizeof in, sizeof init);
        c->init_unique = in.unique;
        atomic_store(&c->offered, (init.flags & INIT_EXT) && (init.flags2 & INIT2_PASSTHROUGH));
    } else if (in.opcode == OP_OPEN) {
        pthread_mutex_lock(&c->lock);
        for (int i = 0; i < MAX_OPENS; i++) {
            if (c->opens[i] == 0) { c->opens[i] = in.unique; break; }
        }
        pthread_mutex_unlock(&c->lock);
    }
    return n;
}

/// True (and forgets it) when `unique` is an OPEN request this hook saw.
static int take_open(struct conn *c, uint64_t unique) {
    int found = 0;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < MAX_OPENS; i++) {
        if (c->opens[i] == unique) { c->opens[i] = 0; found = 1; break; }
    }
    pthread_mutex_unlock(&c->lock);
    return found;
}

static ssize_t hook_writev(int fd, struct iovec *iov, int count, void *userdata) {
    (void)userdata;
    struct conn *c = conn_for(fd);
    if (c && count >= 1 && iov[0].iov_len >= sizeof(struct out_header)) {
        struct out_header out;
        memcpy(&out, iov[0].iov_base, sizeof out);
        if (out.unique == c->init_unique && out.unique != 0 && out.error == 0) {
            int active = 0;
            if (atomic_load(&c->offered) && count >= 2 && iov[1].iov_len >= sizeof(struct init_out)) {
                struct init_out *init = iov[1].iov_base;
                init->flags |= INIT_EXT;
                init->flags2 |= INIT2_PASSTHROUGH;
                init->max_stack_depth = 1;
                active = 1;
            }
            atomic_store(&c->state, active);
        } else if (out.unique != 0 && take_open(c, out.unique) && out.error == 0 && count >= 2 &&
                   iov[1].iov_len >= sizeof(struct open_out)) {
            struct open_out *open = iov[1].iov_base;
            if ((open->fh & MARKER) && atomic_load(&c->state) == 1) {
                open->open_flags |= FOPEN_PASSTHROUGH_FLAG;
                open->backing_id = (int32_t)((open->fh >> 32) & 0x7fffffff);
            }
        }
    }
    return writev(fd, iov, count);
}

int tsr_passthrough_install(struct fuse_session *se) {
    int fd = fuse_session_fd(se);
    if (fd < 0 || fd >= MAX_FD) return -EBADF;
    pthread_mutex_lock(&conns_lock);
    struct conn *c = conns[fd];
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) { pthread_mutex_unlock(&conns_lock); return -ENOMEM; }
        pthread_mutex_init(&c->lock, NULL);
        conns[fd] = c;
    }
    atomic_store(&c->state, -1);
    atomic_store(&c->offered, 0);
    c->init_unique = 0;
    memset(c->opens, 0, sizeof c->opens);
    pthread_mutex_unlock(&conns_lock);
    static const struct fuse_custom_io io = { .writev = hook_writev, .read = hook_read };
    return fuse_session_custom_io(se, &io, fd);
}

int tsr_passthrough_state(struct fuse_session *se) {
    struct conn *c = conn_for(fuse_session_fd(se));
    return c ? atomic_load(&c->state) : -1;
}

int tsr_passthrough_backing_open(struct fuse_session *se, int fd) {
    struct backing_map map = { .fd = fd, .flags = 0, .padding = 0 };
    int id = ioctl(fuse_session_fd(se), DEV_IOC_BACKING_OPEN, &map);
    return id > 0 ? id : (id == 0 ? -EIO : -errno);
}

int tsr_passthrough_backing_close(struct fuse_session *se, int id) {
    uint32_t value = (uint32_t)id;
    return ioctl(fuse_session_fd(se), DEV_IOC_BACKING_CLOSE, &value) == 0 ? 0 : -errno;
}

uint64_t tsr_passthrough_fh(uint64_t handle, int backing_id) {
    return MARKER | ((uint64_t)(uint32_t)backing_id << 32) | (handle & 0xffffffffull);
}

uint64_t tsr_passthrough_handle(uint64_t fh) { return (fh & MARKER) ? (fh & 0xffffffffull) : fh; }

int tsr_passthrough_backing_id(uint64_t fh) { return (fh & MARKER) ? (int)((fh >> 32) & 0x7fffffff) : 0; }
