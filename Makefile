# s3mount: build and install.
#
#   make install                    # /usr/local/bin/s3mount, mount helpers, units, man page
#   make install DESTDIR=/tmp/pkg   # staged install (packaging); nothing outside DESTDIR
#   make uninstall                  # same PREFIX/DESTDIR as install
#   make man                        # just target/s3mount.1
#   make deb                        # target/debian/s3mount_VERSION-1_ARCH.deb (cargo-deb)
#
# The package installs under /usr (/usr/bin/s3mount, /lib/systemd/system/s3mount@.service,
# /usr/share/man, the completions), never under /usr/local where `make install` puts its files;
# both want the /sbin/mount.*s3mount helper links, so use one or the other on a machine.
# cargo-deb is installed (`cargo install --locked`, pinned) the first time `make deb` needs it.
#
# The units' ExecStart is rewritten to $(BINDIR)/s3mount. The mount(8) helpers /sbin/mount.fuse.s3mount and /sbin/mount.s3mount are symlinks to the
# binary, so `mount -t fuse.s3mount BUCKET DIR -o ...` and fstab lines work.

PREFIX      ?= /usr/local
DESTDIR     ?=
CARGO       ?= cargo
INSTALL     ?= install
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man/man1
SBINDIR     ?= /sbin
UNITDIR     ?= /etc/systemd/system

BIN   := target/release/s3mount
UNITS := systemd/s3mount@.service systemd/mnt-s3-photos.mount
DEB_ASSETS := target/deb-assets
CARGO_DEB_VERSION := 3.8.0

.PHONY: all build man install uninstall clean deb deb-assets cargo-deb

all: build

build:
	$(CARGO) build --release --locked

$(BIN): build

# The man page comes from the clap definition (`s3mount --print-man-page`).
man: build
	./$(BIN) --print-man-page > target/s3mount.1.tmp
	mv target/s3mount.1.tmp target/s3mount.1

install: man
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)
	$(INSTALL) -m 755 $(BIN) $(DESTDIR)$(BINDIR)/s3mount
	ln -sf $(BINDIR)/s3mount $(DESTDIR)$(SBINDIR)/mount.fuse.s3mount
	ln -sf $(BINDIR)/s3mount $(DESTDIR)$(SBINDIR)/mount.s3mount
	for u in $(UNITS); do \
		sed 's|/usr/local/bin/s3mount|$(BINDIR)/s3mount|g' $$u > $(DESTDIR)$(UNITDIR)/$${u##*/} && \
		chmod 644 $(DESTDIR)$(UNITDIR)/$${u##*/} || exit 1; \
	done
	$(INSTALL) -m 644 target/s3mount.1 $(DESTDIR)$(MANDIR)/s3mount.1
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then \
		systemctl daemon-reload; fi

# What the package carries besides the binary, generated from it: the man page, the bash, zsh
# and fish completions, and the units with ExecStart=/usr/bin/s3mount.
deb-assets: build
	rm -rf $(DEB_ASSETS) && mkdir -p $(DEB_ASSETS)
	./$(BIN) --print-man-page > $(DEB_ASSETS)/s3mount.1
	./$(BIN) --print-completions bash > $(DEB_ASSETS)/s3mount.bash
	./$(BIN) --print-completions zsh > $(DEB_ASSETS)/_s3mount
	./$(BIN) --print-completions fish > $(DEB_ASSETS)/s3mount.fish
	for u in $(UNITS); do \
		sed 's|/usr/local/bin/s3mount|/usr/bin/s3mount|g' $$u > $(DEB_ASSETS)/$${u##*/} || exit 1; \
	done

# Installed once into ~/.cargo/bin and kept: later runs only check the version.
cargo-deb:
	@if [ "$$($(CARGO) deb --version 2>/dev/null)" != "cargo-deb $(CARGO_DEB_VERSION)" ]; then \
		echo "installing cargo-deb $(CARGO_DEB_VERSION)"; \
		$(CARGO) install cargo-deb --locked --version $(CARGO_DEB_VERSION); \
	fi

deb: deb-assets cargo-deb
	$(CARGO) deb --no-build
	@ls -1t target/debian/s3mount_*.deb | head -1

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/s3mount
	rm -f $(DESTDIR)$(SBINDIR)/mount.fuse.s3mount $(DESTDIR)$(SBINDIR)/mount.s3mount
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(UNITS)))
	rm -f $(DESTDIR)$(MANDIR)/s3mount.1

clean:
	$(CARGO) clean
