package main

// The base layer stands in for gcr.io/distroless/static-debian12:nonroot,
// which cannot be pulled here. It holds what that image provides and the
// plugin uses: the two accounts the image's users are (root, and nonroot,
// which USER 65532:65532 runs as), their home directories, /tmp, and the CA
// bundle a TLS connection to Vault is verified against when no CA file is
// configured.
//
// Left out, because a static Go binary that only talks to Vault and a unix
// socket never reads them: tzdata, netbase (/etc/services, /etc/protocols),
// media-types, /etc/os-release, the nobody/tty/staff accounts and
// /etc/nsswitch.conf. Without nsswitch.conf Go's resolver looks hosts up in
// /etc/hosts and then DNS, the order distroless's file names, and os/user
// reads /etc/passwd directly; so the plugin behaves the same.

const (
	rootUID    = 0
	nonrootUID = 65532

	// caBundlePath is where Debian's ca-certificates package puts the bundle,
	// on the build machine and in distroless alike.
	caBundlePath = "/etc/ssl/certs/ca-certificates.crt"

	// binaryPath is where the Dockerfile's final stage copies the plugin.
	binaryPath = "/vault-kms-plugin"
)

// passwd and group list uid and gid 0 and 65532 under the names distroless
// gives them; a home directory and login shell as distroless sets them.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nonroot:x:65532:\n"
)

func rootOwned(path string, mode int64, body []byte) entry {
	return entry{path: path, mode: mode, uid: rootUID, gid: rootUID, owner: "root", body: body}
}

// baseEntries is the distroless stand-in, with caBundle as the CA bundle.
func baseEntries(caBundle []byte) []entry {
	return []entry{
		rootOwned("etc/", 0o755, nil),
		rootOwned("etc/passwd", 0o644, []byte(passwd)),
		rootOwned("etc/group", 0o644, []byte(group)),
		rootOwned("etc/ssl/", 0o755, nil),
		rootOwned("etc/ssl/certs/", 0o755, nil),
		rootOwned(caBundlePath[1:], 0o644, caBundle),
		rootOwned("home/", 0o755, nil),
		{path: "home/nonroot/", mode: 0o700, uid: nonrootUID, gid: nonrootUID, owner: "nonroot"},
		rootOwned("root/", 0o700, nil),
		rootOwned("tmp/", 0o1777, nil),
	}
}

// binaryEntries is what the Dockerfile's COPY adds: the binary, root-owned
// and executable by anyone.
func binaryEntries(binary []byte) []entry {
	return []entry{rootOwned(binaryPath[1:], 0o755, binary)}
}
