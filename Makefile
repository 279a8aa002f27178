# s3mount: build and install.
#
#   make install                    # /usr/local/bin/s3mount, mount helpers, units, man page
#   make install DESTDIR=/tmp/pkg   # staged install (packaging); nothing outside DESTDIR
#   make uninstall                  # same PREFIX/DESTDIR as install
#   make man                        # just target/s3mount.1
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

.PHONY: all build man install uninstall clean

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

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/s3mount
	rm -f $(DESTDIR)$(SBINDIR)/mount.fuse.s3mount $(DESTDIR)$(SBINDIR)/mount.s3mount
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(UNITS)))
	rm -f $(DESTDIR)$(MANDIR)/s3mount.1

clean:
	$(CARGO) clean
