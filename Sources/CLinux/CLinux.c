#include "CLinux.h"
#include <sys/ioctl.h>
#include <linux/fs.h>

int tsr_ficlone(int dst_fd, int src_fd) { return ioctl(dst_fd, FICLONE, src_fd); }
