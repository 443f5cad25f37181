package engine

import "golang.org/x/sys/unix"

// peerPID returns the process id at the other end of the unix socket fd
// (SO_PEERCRED), which bridge.take requires to be this process.
func peerPID(fd int) (int, error) {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return 0, err
	}
	return int(cred.Pid), nil
}
