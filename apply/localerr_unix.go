//go:build unix

package apply

import "syscall"

// diskFullErrnos: no space, over quota, read-only file system, file too large.
var diskFullErrnos = []error{syscall.ENOSPC, syscall.EDQUOT, syscall.EROFS, syscall.EFBIG}
