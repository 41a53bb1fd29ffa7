#ifndef TSR_CLINUX_H
#define TSR_CLINUX_H
// Linux calls Swift cannot make directly: ioctl is variadic and FICLONE is a function-like
// macro. One wrapper per call; no logic here.

#include <sys/xattr.h>

/// ioctl(dst, FICLONE, src): make dst share src's extents (reflink). 0 or -1 with errno.
int tsr_ficlone(int dst_fd, int src_fd);
#endif
