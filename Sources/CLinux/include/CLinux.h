#ifndef TSR_CLINUX_H
#define TSR_CLINUX_H
// Linux calls Swift cannot make directly: ioctl is variadic and FICLONE is a function-like
// macro; sync_file_range is declared only under _GNU_SOURCE. One wrapper per call; no logic here.

#include <spawn.h>
#include <sys/xattr.h>

/// ioctl(dst, FICLONE, src): make dst share src's extents (reflink). 0 or -1 with errno.
int tsr_ficlone(int dst_fd, int src_fd);

/// sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE): start writing the range's dirty
/// pages to disk without waiting for them. 0 or -1 with errno.
int tsr_start_writeback(int fd, long long offset, long long length);

/// posix_spawn_file_actions_addchdir_np (glibc 2.29+): the child starts in `path`.
int tsr_spawn_add_chdir(posix_spawn_file_actions_t *actions, const char *path);

/// The commit a build was made from: scripts/package.sh builds with -Xcc -DTSR_BUILD_COMMIT=<hash>;
/// other builds give "".
const char *tsr_build_commit(void);

#endif
