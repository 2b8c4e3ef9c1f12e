// SPDX-License-Identifier: GPL-2.0
// LD_PRELOAD shim for the nested guest's fio (scripts/guest-init.sh): Debian's fio keeps its job
// table in a System V shared memory segment (shmget/shmat), and the project's kernel config has
// no CONFIG_SYSVIPC (shmget fails with ENOSYS: "error: failed to setup shm segment"). This shim
// gives fio the same thing from anonymous shared mappings: MAP_SHARED, so processes fio forks
// after attaching share it as they would a SysV segment. Only what fio does is supported:
// private keys, attach at a kernel-chosen address, remove-after-attach. The guest uses it only
// when /proc/sysvipc is absent; fio still does all the I/O and the verification.
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>

#define MAX_SEGS 64

static struct {
	void *addr;
	size_t size;
} segs[MAX_SEGS];

int shmget(key_t key, size_t size, int flags)
{
	int i;

	(void)flags;
	if (key != IPC_PRIVATE || size == 0) {
		errno = EINVAL;
		return -1;
	}
	for (i = 0; i < MAX_SEGS; i++) {
		if (segs[i].addr)
			continue;
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			errno = ENOMEM;
			return -1;
		}
		segs[i].addr = p;
		segs[i].size = size;
		return i;
	}
	errno = ENOSPC;
	return -1;
}

void *shmat(int id, const void *addr, int flags)
{
	(void)flags;
	if (id < 0 || id >= MAX_SEGS || !segs[id].addr || addr) {
		errno = EINVAL;
		return (void *)-1;
	}
	return segs[id].addr;
}

int shmdt(const void *addr)
{
	int i;

	for (i = 0; i < MAX_SEGS; i++) {
		if (segs[i].addr == addr) {
			munmap(segs[i].addr, segs[i].size);
			segs[i].addr = NULL;
			return 0;
		}
	}
	errno = EINVAL;
	return -1;
}

int shmctl(int id, int cmd, struct shmid_ds *buf)
{
	(void)buf;
	if (id < 0 || id >= MAX_SEGS || !segs[id].addr) {
		errno = EINVAL;
		return -1;
	}
	if (cmd == IPC_RMID)
		return 0; // freed by shmdt (the mapping lives while attached, as a removed segment)
	errno = EINVAL;
	return -1;
}
