// Copyright (c) 2020 The Gnet Authors. All rights reserved.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

package socket

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

func sysSocket(family, sotype, proto int) (int, error) {
	return unix.Socket(family, sotype|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
}

// sysAccept is unix.Accept4 without its garbage. loopmq patch: unix.Accept4
// moves its 112-byte RawSockaddrAny to the heap on every call, the one that
// ends an accept batch with EAGAIN included, about 220 bytes of garbage per
// accepted connection; here the raw address stays on the stack and only the
// Sockaddr gnet keeps is allocated. Other addresses (Unix domain: loopmq's
// TLS and WebSocket bridge) are read back with getpeername, which gives the
// same peer address; if that fails the connection is dropped as one reset
// before it was accepted (ECONNABORTED: the acceptor moves on to the next).
// See third_party/gnet/LOOPMQ.md.
func sysAccept(fd int) (nfd int, sa unix.Sockaddr, err error) {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	r, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&rsa)),
		uintptr(unsafe.Pointer(&n)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, nil, errno
	}
	nfd = int(r)
	switch rsa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		port := (*[2]byte)(unsafe.Pointer(&p.Port))
		return nfd, &unix.SockaddrInet4{Port: int(port[0])<<8 | int(port[1]), Addr: p.Addr}, nil
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		port := (*[2]byte)(unsafe.Pointer(&p.Port))
		return nfd, &unix.SockaddrInet6{Port: int(port[0])<<8 | int(port[1]), ZoneId: p.Scope_id, Addr: p.Addr}, nil
	}
	if sa, err = unix.Getpeername(nfd); err != nil {
		_ = unix.Close(nfd)
		return -1, nil, unix.ECONNABORTED
	}
	return nfd, sa, nil
}
