# vd: virtual-desktop I/O for KVM hosts.  Quick start: `make demo`, `make test`.
# Every target installs what it lacks first (scripts/deps.sh is idempotent).
SHELL := /bin/bash
.DEFAULT_GOAL := help
VARIANT ?= base
export VARIANT

.PHONY: help deps kernel modules tools initramfs demo shell test test-host test-vm test-reconfig test-guests test-tcg-guests bench soak clean

help:
	@echo "make demo     build everything, boot the test VM, load the modules, run vdctl status"
	@echo "make test     build everything, run every test (host cargo tests + KUnit + VM integration)"
	@echo "make shell    boot the test VM with the modules and tools, interactive"
	@echo "make bench    benchmarks in the test VM (medians and ratios from one boot)"
	@echo "make kernel|modules|tools|initramfs   single build steps  (VARIANT=debug for lockdep/KASAN/kmemleak)"
	@echo "TESTS='name ...' make test-vm         run only the named VM tests (see scripts/vmtests/)"
	@echo "make test-reconfig  only the second VM boot of make test: the SR-IOV PF reconfiguration tests (7x)"
	@echo "make test-guests    every stock QEMU Linux guest test (8x) with nested KVM guests; not in make test"
	@echo "make test-tcg-guests  only make test's two TCG guest boots: the 8x tests marked vd-tcg a|b"
	@echo "make soak [RUNS=10] make test RUNS times in a row; every run's results in build/soak/"

deps:
	@bash scripts/deps.sh

kernel: deps
	@bash scripts/kernel.sh >/dev/null

modules: kernel
	@bash scripts/build.sh modules

tools: deps
	@bash scripts/build.sh tools

initramfs: modules tools
	@bash scripts/build.sh initramfs

demo: initramfs
	@bash scripts/vm.sh demo

shell: initramfs
	@bash scripts/vm.sh shell

test:
	@bash scripts/test.sh all

test-host:
	@bash scripts/test.sh host

test-vm: initramfs
	@bash scripts/test.sh vm

test-guests: initramfs
	@bash scripts/test.sh guests

test-reconfig: initramfs
	@bash scripts/test.sh reconfig

test-tcg-guests: initramfs
	@bash scripts/test.sh tcg-guests

soak:
	@bash scripts/soak.sh

bench: initramfs
	@bash scripts/vm.sh bench

clean:
	rm -rf build userspace-tools/target
	@bash -c '. scripts/lib.sh; tree=$$(ls -d $$VD_CACHE/kernel/$(VARIANT)-* 2>/dev/null | head -1); [ -z "$$tree" ] || $(MAKE) -s -C $$tree M=$(CURDIR) clean >/dev/null 2>&1 || true'
