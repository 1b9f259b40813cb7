# The project's public home; change it here if it moves.
TERMUX_PKG_HOMEPAGE=https://github.com/dyspatcher/dyspatcher
TERMUX_PKG_DESCRIPTION="A private, end-to-end encrypted chat server in one small executable"
TERMUX_PKG_LICENSE="MIT, Apache-2.0"
TERMUX_PKG_MAINTAINER="@dyspatcher"
TERMUX_PKG_VERSION=0.1.0
# Built from a local checkout (see termux/README.md): the package folder is
# this repository's termux/ folder, linked or copied into termux-packages.
# For a release tarball instead, set these two and drop termux_step_get_source:
#   TERMUX_PKG_SRCURL=https://github.com/dyspatcher/dyspatcher/archive/refs/tags/v${TERMUX_PKG_VERSION}.tar.gz
#   TERMUX_PKG_SHA256=<sha256 of that tarball>
TERMUX_PKG_SRCURL=""
TERMUX_PKG_SHA256=""
TERMUX_PKG_BUILD_IN_SRC=true
# The executable needs only Android's libc. openssh carries the SSH tunnel
# (--sshpfw-*), openssl-tool makes the admin key for the service,
# termux-services runs the service.
TERMUX_PKG_DEPENDS=""
TERMUX_PKG_RECOMMENDS="openssh, openssl-tool, termux-services"
TERMUX_PKG_CONFFILES="
var/service/dyspatcher/run
var/service/dyspatcher/log/run
"

# Copies the source from DYSPATCHER_SRC, or else from the checkout this file
# sits in (its termux/ folder may be symlinked into termux-packages/packages).
termux_step_get_source() {
	local src="${DYSPATCHER_SRC:-}"
	if [ -z "$src" ]; then
		src="$(realpath "$TERMUX_PKG_BUILDER_DIR/build.sh")"
		src="$(dirname "$(dirname "$src")")"
	fi
	if [ ! -f "$src/Cargo.toml" ] || ! grep -q '^name = "dyspatcher"' "$src/Cargo.toml"; then
		termux_error_exit "no dyspatcher checkout at '$src': set DYSPATCHER_SRC to one"
	fi
	rm -rf "$TERMUX_PKG_SRCDIR"
	mkdir -p "$TERMUX_PKG_SRCDIR"
	if [ -d "$src/.git" ] && command -v git >/dev/null; then
		# The work tree as git sees it: tracked and new files, not ignored ones.
		# One tar reads the whole list (xargs would start several, each writing its own
		# archive, and the reading tar stops at the end of the first).
		git -C "$src" ls-files -z --cached --others --exclude-standard |
			(cd "$src" && tar -cf - --no-recursion --ignore-failed-read --null -T -) |
			tar -xf - -C "$TERMUX_PKG_SRCDIR"
	else
		(cd "$src" && tar -cf - --exclude='./target' --exclude='./target-*' --exclude='./.git' .) |
			tar -xf - -C "$TERMUX_PKG_SRCDIR"
	fi
}

termux_step_make() {
	termux_setup_rust
	cargo build --jobs "$TERMUX_PKG_MAKE_PROCESSES" --target "$CARGO_TARGET_NAME" --release --locked
}

termux_step_make_install() {
	install -Dm700 "${CARGO_TARGET_DIR:-target}/$CARGO_TARGET_NAME/release/dyspatcher" \
		"$TERMUX_PREFIX/bin/dyspatcher"
	install -Dm600 termux/README.md "$TERMUX_PREFIX/share/doc/dyspatcher/README.termux.md"
	if [ -f README.md ]; then
		install -Dm600 README.md "$TERMUX_PREFIX/share/doc/dyspatcher/README.md"
	fi
}

# The termux-services service, disabled until `sv-enable dyspatcher`.
termux_step_post_make_install() {
	local sv="$TERMUX_PREFIX/var/service/dyspatcher"
	mkdir -p "$sv/log"
	sed "1s|^#!.*|#!$TERMUX_PREFIX/bin/sh|; s|/data/data/com.termux/files/usr|$TERMUX_PREFIX|g; s|/data/data/com.termux/files/home|$TERMUX_ANDROID_HOME|g" \
		termux/service/dyspatcher/run >"$sv/run"
	sed "1s|^#!.*|#!$TERMUX_PREFIX/bin/sh|; s|/data/data/com.termux/files/usr|$TERMUX_PREFIX|g" \
		termux/service/dyspatcher/log/run >"$sv/log/run"
	chmod 700 "$sv/run" "$sv/log/run"
	touch "$sv/down"
}
