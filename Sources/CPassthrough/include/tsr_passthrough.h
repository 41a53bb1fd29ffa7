#ifndef TSR_PASSTHROUGH_H
#define TSR_PASSTHROUGH_H
// Kernel FUSE passthrough (Linux >= 6.9) on libfuse 3.14, which has no API for it: the session's
// /dev/fuse traffic goes through read/writev hooks (fuse_session_custom_io on the fd libfuse
// mounted) that ask for FUSE_PASSTHROUGH in the INIT reply and put a backing file id into OPEN
// replies whose file handle carries one (tsr_passthrough_fh). See docs/ARCHITECTURE.md.
#include <stdint.h>

struct fuse_session;

/// Installs the hooks; call after fuse_session_mount, before the loop. 0, or -errno.
int tsr_passthrough_install(struct fuse_session *se);
/// 1: the kernel accepted passthrough at INIT; 0: it did not offer it; -1: INIT not seen yet
/// (or the hooks are not installed).
int tsr_passthrough_state(struct fuse_session *se);
/// Registers an open file as a backing file (needs CAP_SYS_ADMIN); the id (> 0), or -errno.
int tsr_passthrough_backing_open(struct fuse_session *se, int fd);
/// Forgets a backing id (open files keep using it). 0, or -errno.
int tsr_passthrough_backing_close(struct fuse_session *se, int id);
/// The file handle of an open reply that should be passthrough to `backing_id`.
uint64_t tsr_passthrough_fh(uint64_t handle, int backing_id);
/// The filesystem's own handle inside a file handle (the handle itself when it carries no id).
uint64_t tsr_passthrough_handle(uint64_t fh);
/// The backing id a file handle carries, or 0.
int tsr_passthrough_backing_id(uint64_t fh);
#endif
