# Decos: the README's two commands are `make run` and `make test`.
export PATH := /opt/swift/usr/bin:$(PATH)

SWIFT      ?= swift
MANIFEST   ?= examples/node.xml
HTTP       ?= 127.0.0.1:7480
STATIC_DIR := .build-static
STATIC_BIN := $(STATIC_DIR)/release/decos

.PHONY: deps build release run local-cluster test static image boot netboot cluster bench fuzz clean

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product decos

## Runs a node on $(MANIFEST) in hosted mode, gateway on $(HTTP).
run: release
	.build/release/decos run $(MANIFEST) --http $(HTTP)

## Three nodes as processes on this machine forming one cluster (N= for more, up to 9).
local-cluster: release
	scripts/local-cluster.sh

## Builds everything, the boot image included, and runs every test (unit, system, VMs).
test: build image
	DECOS_BIN=$(CURDIR)/.build/debug/decos DECOS_IMAGE=$(CURDIR)/out scripts/test.sh

## A fully static decos: flags in linker/static.flags.
static: deps
	$(SWIFT) build -c release --product decos --scratch-path $(STATIC_DIR) $$(cat linker/static.flags)
	@file $(STATIC_BIN); file $(STATIC_BIN) | grep -q "statically linked" || { echo "make static: $(STATIC_BIN) is not statically linked" >&2; exit 1; }
	@! grep -q icudt $(STATIC_BIN) || { echo "make static: the binary carries ICU data: something links all of Foundation (the node may use FoundationEssentials only)" >&2; exit 1; }
	$(STATIC_BIN) --version
	scripts/smoke.sh $(STATIC_BIN)
	@ls -l $(STATIC_BIN) | awk '{print "make static: " $$5 " bytes"}'

## A bootable image in out/: kernel, initramfs (static decos as /init, the manifest, NIC modules), iPXE script.
## TLS=1: the gateway serves HTTPS with a self-signed certificate (out/tls.crt; its fingerprint is printed).
NICS ?= virtio e1000 rxe
image: static
	NICS="$(NICS)" TLS="$(TLS)" boot/mkimage.sh $(MANIFEST) $(STATIC_BIN)

## Boots out/ in QEMU: serial console here, gateway on 127.0.0.1:$(HTTP_PORT).
## The data disk: DISK=out/data.img (kept across boots; DISK=none for none), DISK_SIZE=256M when made.
HTTP_PORT ?= 7480
DISK_SIZE ?= 256M
boot: image
	HTTP_PORT=$(HTTP_PORT) DISK="$(DISK)" DISK_SIZE="$(DISK_SIZE)" boot/qemu.sh

## The same image over the network: PXE → iPXE → out/boot.ipxe over TFTP.
netboot: image
	HTTP_PORT=$(HTTP_PORT) DISK="$(DISK)" DISK_SIZE="$(DISK_SIZE)" boot/qemu.sh --netboot

## N VMs on one virtual LAN forming one cluster; gateways on 127.0.0.1:7481…; data disks out/data-I.img.
N ?= 3
cluster: image
	N=$(N) DISK="$(DISK)" DISK_SIZE="$(DISK_SIZE)" boot/cluster.sh

## Fuzzes every decoder of outside input for FUZZ_SECONDS each (default 60): scripts/fuzz.sh.
fuzz: deps
	scripts/fuzz.sh

## Benchmarks; figures go in docs/performance.md.
bench: deps
	Benchmarks/run.sh

clean:
	rm -rf .build $(STATIC_DIR) Benchmarks/.build Fuzz/.build out
