#ifndef TSR_CFUSE_SHIM_H
#define TSR_CFUSE_SHIM_H
// libfuse 3.14 low-level API. FUSE_USE_VERSION 312 makes fuse_session_loop_mt a real function.
// Bitfields of fuse_file_info are set through these helpers; no logic here.
#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>
#include <sys/statvfs.h>

static inline void tsr_fi_set_keep_cache(struct fuse_file_info *fi, int v) { fi->keep_cache = v ? 1 : 0; }
static inline void tsr_fi_set_direct_io(struct fuse_file_info *fi, int v) { fi->direct_io = v ? 1 : 0; }
static inline void tsr_fi_set_cache_readdir(struct fuse_file_info *fi, int v) { fi->cache_readdir = v ? 1 : 0; }
static inline int tsr_fi_flags(const struct fuse_file_info *fi) { return fi ? fi->flags : 0; }
static inline uint64_t tsr_fi_fh(const struct fuse_file_info *fi) { return fi ? fi->fh : 0; }
static inline uint64_t tsr_fi_lock_owner(const struct fuse_file_info *fi) { return fi ? fi->lock_owner : 0; }
static inline int tsr_fi_is_null(const struct fuse_file_info *fi) { return fi == 0; }
#endif
