# etrnd Makefile: works with GNU make and BSD make (no GNU-only syntax).
#
#   make            build the release binary
#   make run        run the daemon in the foreground from the checkout (127.0.0.1:2525)
#   make test       run every test
#   make install    install under $(DESTDIR)$(PREFIX)
#   make uninstall  remove what install put there
#   make clean      remove build output and ./var

PREFIX ?=	/usr/local
SYSCONFDIR ?=	$(PREFIX)/etc
MANDIR ?=	$(PREFIX)/share/man
BINDIR ?=	$(PREFIX)/sbin
RCDIR ?=	$(SYSCONFDIR)/rc.d
CARGO ?=	cargo
INSTALL ?=	install

BIN =		target/release/etrnd

all: build

# cargo decides what to rebuild, so this always runs it.
build:
	ETRND_PREFIX=$(PREFIX) $(CARGO) build --release

run: build
	./$(BIN) -d -v -f etc/etrnd.conf

test:
	$(CARGO) test

install: build
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/etrnd/db \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(RCDIR)
	$(INSTALL) -m 755 $(BIN) $(DESTDIR)$(BINDIR)/etrnd
	ln -sf etrnd $(DESTDIR)$(BINDIR)/mailq
	ln -sf etrnd $(DESTDIR)$(BINDIR)/sendmail
	$(INSTALL) -m 644 man/etrnd.8 $(DESTDIR)$(MANDIR)/man8/etrnd.8
	$(INSTALL) -m 644 man/etrnd.conf.5 $(DESTDIR)$(MANDIR)/man5/etrnd.conf.5
	$(INSTALL) -m 755 rc.d/etrnd $(DESTDIR)$(RCDIR)/etrnd
	for f in etrnd.conf scheduler.conf db/routes db/localnames db/aliases; do \
		$(INSTALL) -m 644 etc/hub/$$f $(DESTDIR)$(SYSCONFDIR)/etrnd/$$f.sample; \
		[ -f $(DESTDIR)$(SYSCONFDIR)/etrnd/$$f ] || \
		$(INSTALL) -m 644 etc/hub/$$f $(DESTDIR)$(SYSCONFDIR)/etrnd/$$f; \
	done

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/etrnd $(DESTDIR)$(BINDIR)/mailq $(DESTDIR)$(BINDIR)/sendmail \
		$(DESTDIR)$(MANDIR)/man8/etrnd.8 $(DESTDIR)$(MANDIR)/man5/etrnd.conf.5 \
		$(DESTDIR)$(RCDIR)/etrnd
	for f in etrnd.conf scheduler.conf db/routes db/localnames db/aliases; do \
		rm -f $(DESTDIR)$(SYSCONFDIR)/etrnd/$$f.sample; \
	done

clean:
	$(CARGO) clean
	rm -rf var

.PHONY: all build run test install uninstall clean
