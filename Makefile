# etrnd Makefile: works with GNU make and BSD make (no GNU-only syntax).
#
#   make            build the release binary
#   make run        run the daemon in the foreground from the checkout (127.0.0.1:2525)
#   make test       run every test
#   make static     a binary with no shared-library dependency (target/etrnd-static)
#   make test-static  the integration tests against a static build
#   make cross      type-check the BSDs, build static musl binaries
#   make install    install under $(DESTDIR)$(PREFIX)
#   make uninstall  remove what install put there
#   make bench      side-by-side figures (see bench/)
#   make crashtest  60 kill -9 rounds under mixed load, 1,000 simulated power cuts
#   make fuzz       every fuzz target for FUZZ_SECONDS (default 600)
#   make soak       30 minutes of mixed load; RSS and descriptors must stay flat
#   make clean      remove build output and ./var

PREFIX ?=	/usr/local
SYSCONFDIR ?=	$(PREFIX)/etc
MANDIR ?=	$(PREFIX)/share/man
BINDIR ?=	$(PREFIX)/sbin
RCDIR ?=	$(SYSCONFDIR)/rc.d
# Linux only: where the systemd unit goes (systemd reads /usr/local/lib too).
SYSTEMDDIR ?=	$(PREFIX)/lib/systemd/system
# The account the daemon drops to, named in the installed etrnd.conf (default:
# _etrnd on OpenBSD, etrnd elsewhere; README.md says how to create it).
ETRND_USER ?=
CARGO ?=	cargo
INSTALL ?=	install

BIN ?=		target/release/etrnd
MAN5 =		etrnd.conf.5 etrnd-routes.5 etrnd-scheduler.conf.5
# The operating system the rc.d script is for (default: this one's uname -s). On
# OpenBSD the rc_cmd script goes to /etc/rc.d with a login class (the descriptor
# limit) in /etc/login.conf.d and the man pages to PREFIX/man, where its man looks;
# on NetBSD the rc.subr script goes to /etc/rc.d (the only place /etc/rc reads);
# elsewhere to RCDIR.
OPSYS ?=
# The shipped scripts and man pages name /usr/local; install rewrites the paths.
SUBST =		sed -e 's|/usr/local/etc|$(SYSCONFDIR)|g' -e 's|/usr/local/sbin|$(BINDIR)|g' \
		-e 's|/usr/local|$(PREFIX)|g'

all: build

# cargo decides what to rebuild, so this always runs it.
build:
	ETRND_PREFIX=$(PREFIX) ETRND_SYSCONFDIR=$(SYSCONFDIR) $(CARGO) build --release

run: build
	./$(BIN) -d -v -f etc/etrnd.conf

# Tests that need a program from outside skip where it is missing (README.md lists
# the packages) and are listed, with the reason, after the run;
# ETRND_REQUIRE_TOOLS=1 makes a missing one a failure.
SKIP_LIST =	target/tmp/skipped-tests.txt
test:
	rm -f $(SKIP_LIST)
	$(CARGO) test; rc=$$?; \
	if [ -s $(SKIP_LIST) ]; then \
		echo "skipped (passed without running):"; sort $(SKIP_LIST) | sed 's/^/  /'; \
	else echo "skipped: none"; fi; \
	exit $$rc

# The installed etrnd.conf is a local-only MTA (etc/local); the hub and client
# setups and the BSDs' mailer.conf go to samples/. A configuration file already
# there is the user's and is kept; its pristine copy is refreshed as NAME.sample.
CONF_FILES =	etrnd.conf scheduler.conf db/routes db/localnames db/aliases
install: build
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/etrnd/db \
		$(DESTDIR)$(SYSCONFDIR)/etrnd/samples/hub/db \
		$(DESTDIR)$(SYSCONFDIR)/etrnd/samples/client/db
	$(INSTALL) -m 755 $(BIN) $(DESTDIR)$(BINDIR)/etrnd
	os="$(OPSYS)"; [ -n "$$os" ] || os=$$(uname -s); \
	mandir="$(MANDIR)"; \
	if [ "$$os" = OpenBSD ] && [ "$$mandir" = "$(PREFIX)/share/man" ]; then \
		mandir="$(PREFIX)/man"; \
	fi; \
	$(INSTALL) -d $(DESTDIR)$$mandir/man8 $(DESTDIR)$$mandir/man5 || exit 1; \
	$(SUBST) man/etrnd.8 > $(DESTDIR)$$mandir/man8/etrnd.8 && \
		chmod 644 $(DESTDIR)$$mandir/man8/etrnd.8 || exit 1; \
	for m in $(MAN5); do \
		$(SUBST) man/$$m > $(DESTDIR)$$mandir/man5/$$m && \
		chmod 644 $(DESTDIR)$$mandir/man5/$$m || exit 1; \
	done
	os="$(OPSYS)"; [ -n "$$os" ] || os=$$(uname -s); \
	case "$$os" in \
	OpenBSD) \
		$(INSTALL) -d $(DESTDIR)/etc/rc.d $(DESTDIR)/etc/login.conf.d && \
		$(SUBST) rc.d/etrnd.openbsd > $(DESTDIR)/etc/rc.d/etrnd && \
		chmod 555 $(DESTDIR)/etc/rc.d/etrnd && \
		cp rc.d/login.conf.etrnd $(DESTDIR)/etc/login.conf.d/etrnd && \
		chmod 644 $(DESTDIR)/etc/login.conf.d/etrnd || exit 1 ;; \
	NetBSD) \
		$(INSTALL) -d $(DESTDIR)/etc/rc.d && \
		$(SUBST) rc.d/etrnd > $(DESTDIR)/etc/rc.d/etrnd && \
		chmod 555 $(DESTDIR)/etc/rc.d/etrnd || exit 1 ;; \
	*) \
		$(INSTALL) -d $(DESTDIR)$(RCDIR) && \
		$(SUBST) rc.d/etrnd > $(DESTDIR)$(RCDIR)/etrnd && \
		chmod 755 $(DESTDIR)$(RCDIR)/etrnd || exit 1 ;; \
	esac; \
	if [ "$$os" = Linux ]; then \
		$(INSTALL) -d $(DESTDIR)$(SYSTEMDDIR) && \
		$(SUBST) etc/systemd/etrnd.service > $(DESTDIR)$(SYSTEMDDIR)/etrnd.service && \
		chmod 644 $(DESTDIR)$(SYSTEMDDIR)/etrnd.service; \
	fi
	for s in ip-up.etrnd ip-down.etrnd; do \
		$(SUBST) etc/ppp/$$s > $(DESTDIR)$(SYSCONFDIR)/etrnd/$$s && \
		chmod 755 $(DESTDIR)$(SYSCONFDIR)/etrnd/$$s || exit 1; \
	done
	os="$(OPSYS)"; [ -n "$$os" ] || os=$$(uname -s); \
	user="$(ETRND_USER)"; \
	if [ -z "$$user" ]; then \
		if [ "$$os" = OpenBSD ]; then user=_etrnd; else user=etrnd; fi; \
	fi; \
	d=$(DESTDIR)$(SYSCONFDIR)/etrnd; \
	for f in $(CONF_FILES); do \
		$(SUBST) -e "s|@ETRND_USER@|$$user|g" etc/local/$$f > $$d/$$f.sample && \
		chmod 644 $$d/$$f.sample || exit 1; \
		[ -f $$d/$$f ] || cp -p $$d/$$f.sample $$d/$$f || exit 1; \
		for s in hub client; do \
			$(SUBST) etc/$$s/$$f > $$d/samples/$$s/$$f && \
			chmod 644 $$d/samples/$$s/$$f || exit 1; \
		done; \
	done; \
	for f in authinfo tls_policy; do \
		$(SUBST) etc/client/db/$$f.sample > $$d/samples/client/db/$$f && \
		chmod 600 $$d/samples/client/db/$$f || exit 1; \
	done; \
	for o in freebsd netbsd openbsd; do \
		$(SUBST) etc/mailer.conf/$$o > $$d/samples/mailer.conf.$$o && \
		chmod 644 $$d/samples/mailer.conf.$$o || exit 1; \
	done; \
	if [ "$$os" = Linux ]; then \
		$(SUBST) rc.d/etrnd.openrc > $$d/samples/etrnd.openrc && \
		chmod 755 $$d/samples/etrnd.openrc; \
	fi

# The names sendmail, mailq and newaliases are the system's to give (README.md, "Use
# etrnd as this machine's MTA"): install leaves them alone, and uninstall removes
# only links to etrnd (an older install made some).
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/etrnd
	for f in mailq sendmail newaliases; do \
		l=$(DESTDIR)$(BINDIR)/$$f; \
		if [ -L $$l ] && [ "$$(readlink $$l)" = etrnd ]; then rm -f $$l; fi; \
	done
	rm -f $(DESTDIR)$(SYSCONFDIR)/etrnd/ip-up.etrnd \
		$(DESTDIR)$(SYSCONFDIR)/etrnd/ip-down.etrnd $(DESTDIR)$(SYSTEMDDIR)/etrnd.service
	rm -rf $(DESTDIR)$(SYSCONFDIR)/etrnd/samples
	os="$(OPSYS)"; [ -n "$$os" ] || os=$$(uname -s); \
	mandir="$(MANDIR)"; \
	if [ "$$os" = OpenBSD ] && [ "$$mandir" = "$(PREFIX)/share/man" ]; then \
		mandir="$(PREFIX)/man"; \
	fi; \
	rm -f $(DESTDIR)$$mandir/man8/etrnd.8; \
	for m in $(MAN5); do rm -f $(DESTDIR)$$mandir/man5/$$m; done; \
	case "$$os" in \
	OpenBSD) rm -f $(DESTDIR)/etc/rc.d/etrnd $(DESTDIR)/etc/login.conf.d/etrnd ;; \
	NetBSD) rm -f $(DESTDIR)/etc/rc.d/etrnd ;; \
	*) rm -f $(DESTDIR)$(RCDIR)/etrnd ;; \
	esac
	for f in $(CONF_FILES); do rm -f $(DESTDIR)$(SYSCONFDIR)/etrnd/$$f.sample; done

# Spool-bound figures run on a fresh file system (bench/spoolfs.sh sets BENCH_DIR).
bench: build
	sh bench/spoolfs.sh python3 bench/compare.py --runs 3 --messages 5000 --drain 10000 \
		--out BENCHMARKS.md
	sh bench/spoolfs.sh sh -c 'sh bench/accept.sh 10 5000 && \
		python3 bench/fsync_ceiling.py 2000 "$$BENCH_DIR" && sh bench/drain.sh 10000 && \
		sh bench/etrn.sh 10000 && sh bench/local.sh 5000 && python3 bench/latency.py 5000 10 && \
		sh bench/recovery.sh 100000'
	python3 bench/idle.py 1000
	python3 bench/tls.py --runs 3
	sh bench/spoolfs.sh python3 bench/atrn.py --messages 5000 --runs 3
	python3 bench/stall.py 10
	python3 bench/bigmsg.py 50
	sh bench/dns.sh 300
	$(CARGO) run --release -q --example sched_mem 10000

# 30 minutes of mixed load with churn; prints RSS and descriptors every minute.
soak: build
	python3 bench/soak.py 1800 60

# The crash suite at full length: 60 kill -9 rounds under mixed load, and 1,000
# simulated power cuts (needs root and loop devices).
crashtest:
	ETRND_CRASH_ROUNDS=60 ETRND_POWERLOSS_ROUNDS=1000 \
		$(CARGO) test --test it -- --nocapture kill9 power_cut

# Each fuzz target for FUZZ_SECONDS (cargo-fuzz; the stable toolchain needs
# RUSTC_BOOTSTRAP=1). Seeds are in fuzz/seeds, the growing corpus in fuzz/corpus.
FUZZ_SECONDS ?=	600
FUZZ_TARGETS =	command server_session reply client_session dns_answer config_files spool_files control_request helper_request auth_exchange atrn_list odmr_session account_files outgoing dsn_params recipients_file
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t; \
		(cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t corpus/$$t seeds/$$t -- \
			-max_total_time=$(FUZZ_SECONDS)) || exit 1; \
	done

# A binary with no shared-library dependency: what one ships on a router.
# STATIC_TARGET names the target triple; on Linux it is musl for this machine's
# processor by default (built with musl-gcc, Debian's musl-tools), elsewhere this
# machine's own triple with a static libc. Another Linux musl triple — a router's:
# `make static STATIC_TARGET=mips-unknown-linux-musl PREFIX=/usr SYSCONFDIR=/etc`
# (OpenWrt's paths), mipsel, armv7, ... — is built by tests/router-cargo.sh with
# Zig's cc and musl, or with the C compiler CC_<triple> names. STATIC_PROFILE=router optimises for size. The triple is named
# so that build scripts and proc-macros stay dynamic.
STATIC_BIN =	target/etrnd-static
static:
	host=$$(rustc -vV | sed -n 's/^host: //p'); \
	case "$$(uname -s)" in \
	Linux) t=$${STATIC_TARGET:-$$(uname -m)-unknown-linux-musl} ;; \
	*) t=$${STATIC_TARGET:-$$host} ;; \
	esac; \
	p=$${STATIC_PROFILE:-release}; \
	cc_var=CC_$$(echo "$$t" | tr - _); \
	case "$$t" in \
	"$$(uname -m)"-unknown-linux-musl) \
		if [ -z "$$(printenv "$$cc_var")" ]; then \
			command -v musl-gcc >/dev/null || { echo "make static: needs musl-gcc (Debian: apt-get install musl-tools) or $$cc_var" >&2; exit 69; }; \
			export "$$cc_var=musl-gcc"; \
		fi ;; \
	*-linux-musl*) \
		ETRND_PREFIX=$(PREFIX) ETRND_SYSCONFDIR=$(SYSCONFDIR) \
			sh tests/router-cargo.sh "$$t" build --profile $$p || exit $$?; \
		d=$$p; [ "$$d" != dev ] || d=debug; \
		cp $${ROUTER_TARGET_DIR:-target/cross-routers}/$$t/$$d/etrnd $(STATIC_BIN) && \
			ls -l $(STATIC_BIN); \
		exit $$? ;; \
	esac; \
	if [ "$$t" != "$$host" ]; then \
		rustup target list --installed 2>/dev/null | grep -qx "$$t" || rustup target add "$$t" || exit 1; \
	fi; \
	RUSTFLAGS="-C target-feature=+crt-static" ETRND_PREFIX=$(PREFIX) ETRND_SYSCONFDIR=$(SYSCONFDIR) \
		$(CARGO) build --profile $$p --target $$t && \
	cp target/$$t/$$p/etrnd $(STATIC_BIN) && ls -l $(STATIC_BIN)

# The platforms etrnd is for, checked from here (tests/cross.sh says which, and
# which it skipped and why).
cross:
	sh tests/cross.sh

# The integration tests against a static build of the daemon.
test-static:
	t=$$(rustc -vV | sed -n 's/^host: //p'); \
	RUSTFLAGS="-C target-feature=+crt-static" ETRND_STATIC=1 \
		$(CARGO) test --target $$t --test it

clean:
	$(CARGO) clean
	rm -rf var

.PHONY: all build static cross test-static run test install uninstall bench crashtest fuzz soak clean
