#define _GNU_SOURCE
#include "CLinux.h"
#include <fcntl.h>
#include <sys/ioctl.h>
#include <linux/fs.h>

int tsr_ficlone(int dst_fd, int src_fd) { return ioctl(dst_fd, FICLONE, src_fd); }

int tsr_start_writeback(int fd, long long offset, long long length) {
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
}

int tsr_spawn_add_chdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

#define TSR_STRING(x) #x
#define TSR_EXPAND_STRING(x) TSR_STRING(x)
const char *tsr_build_commit(void) {
#ifdef TSR_BUILD_COMMIT
    return TSR_EXPAND_STRING(TSR_BUILD_COMMIT);
#else
    return "";
#endif
}
