//go:build windows

package apply

import "syscall"

// diskFullErrnos: ERROR_DISK_FULL (112), ERROR_HANDLE_DISK_FULL (39),
// ERROR_WRITE_PROTECT (19), and the POSIX-style ENOSPC some layers return.
var diskFullErrnos = []error{syscall.Errno(112), syscall.Errno(39), syscall.Errno(19), syscall.ENOSPC}
