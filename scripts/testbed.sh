#!/usr/bin/env bash
# Builds the real servers of the test bed into bin/, each only when it is
# missing or when its pinned version changed.
#
#   scripts/testbed.sh [--adopt] [COMPONENT...]
#
# COMPONENT is one of: vault etcd kube-apiserver kubectl kubelet
# kube-scheduler kube-controller-manager helm3 helm4 (default: all).
# Each one is built from a small Go module under src/testbed/: vault and etcd
# from a main package of their own; the five Kubernetes binaries straight from
# the upstream main packages (k8s.io/kubernetes/cmd/NAME), which the module
# src/testbed/kubernetes lists as tools with the staging modules pinned; helm3
# and helm4 likewise from helm.sh/helm/v3/cmd/helm and helm.sh/helm/v4/cmd/helm.
# Its stamp is the sha256 of the module's go.mod and go.sum, the package's
# *.go files (none for an upstream package), `go version`, the build flags
# (with the version -ldflags of the Kubernetes and Helm binaries) and
# CGO_ENABLED. Built binaries are kept outside the work tree in
#   ${TESTBED_CACHE:-$HOME/.cache/vault-kms-plugin/testbed}/COMPONENT-STAMP
# and hard-linked (or copied) to bin/COMPONENT, so another clone on the same
# machine reuses them and a version bump rebuilds.
#
# --adopt: when no cache entry exists but bin/COMPONENT does (e.g. built by a
# plain `go build`), put that binary into the cache instead of rebuilding it,
# after checking its embedded build info (package path, Go version, and every
# dependency version and sum against the module's go.sum). Not for
# the Kubernetes and Helm binaries, whose version -ldflags cannot be checked.
#
# Prints one line per component ("vault: cached", "etcd: built in 41s", ...)
# and exits non-zero with a message if a build fails (its log is kept).
# The cache keeps the two most recently used builds of each component.
# Environment: TESTBED_CACHE (cache dir), TESTBED_BIN (default: REPO/bin),
# TESTBED_NICE (niceness of builds, default 10).
set -euo pipefail
export LC_ALL=C

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin_dir=${TESTBED_BIN:-$root/bin}
cache_dir=${TESTBED_CACHE:-${HOME:?HOME is not set}/.cache/vault-kms-plugin/testbed}
niceness=${TESTBED_NICE:-10}
keep=2 # cache entries kept per component: the current one and one other
all_components=(vault etcd kube-apiserver kubectl kubelet kube-scheduler kube-controller-manager helm3 helm4)
build_flags=(-trimpath -buildvcs=false)

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

die() {
	echo "testbed: $*" >&2
	exit 1
}

# component_dirs COMPONENT: sets mod_dir (the Go module) and pkg (the main
# package: relative to mod_dir, or an import path in its build list).
component_dirs() {
	case $1 in
	vault | etcd)
		mod_dir=$root/src/testbed/$1
		pkg=.
		;;
	kube-apiserver | kubectl | kubelet | kube-scheduler | kube-controller-manager)
		mod_dir=$root/src/testbed/kubernetes
		pkg=k8s.io/kubernetes/cmd/$1
		;;
	helm3 | helm4)
		mod_dir=$root/src/testbed/$1
		pkg=helm.sh/helm/v${1#helm}/cmd/helm
		;;
	*) die "unknown component '$1' (known: ${all_components[*]})" ;;
	esac
	[[ -f $mod_dir/go.mod ]] || die "$1: $mod_dir/go.mod is missing"
}

# component_ldflags COMPONENT: sets ldflags. The Kubernetes binaries get the
# version stamps of Kubernetes' own release builds (hack/lib/version.sh), so
# that /version and `kubectl version` report the pinned release and not
# v0.0.0-master (which kubectl fails to parse). Helm gets the stamps of its
# own Makefile: its version and, for Helm 3, the Kubernetes version it tells
# templates (.Capabilities.KubeVersion) when it renders without a cluster;
# unstamped it says v1.20, which the chart's kubeVersion refuses.
component_ldflags() {
	local v major minor p client_go
	ldflags=
	case $1 in
	kube-apiserver | kubectl | kubelet | kube-scheduler | kube-controller-manager)
		v=$(module_version k8s.io/kubernetes)
		[[ $v =~ ^v([0-9]+)\.([0-9]+)\. ]] || die "$1: unexpected k8s.io/kubernetes version '$v'"
		major=${BASH_REMATCH[1]}
		minor=${BASH_REMATCH[2]}
		for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
			ldflags+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor"
			ldflags+=" -X $p.gitTreeState=clean"
		done
		ldflags=${ldflags# }
		;;
	helm3 | helm4)
		p=helm.sh/helm/v${1#helm}
		v=$(module_version "$p")
		ldflags="-X $p/internal/version.version=$v -X $p/internal/version.gitTreeState=clean"
		if [[ $1 == helm3 ]]; then
			# As Helm 3's Makefile derives it: client-go v0.N.M is Kubernetes 1.N.
			client_go=$(module_version k8s.io/client-go)
			[[ $client_go =~ ^v0\.([0-9]+)\. ]] || die "$1: unexpected k8s.io/client-go version '$client_go'"
			for p in $p/pkg/lint/rules $p/pkg/chartutil; do
				ldflags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=${BASH_REMATCH[1]}"
			done
		fi
		;;
	esac
}

# module_version MODULE: the version of MODULE in mod_dir's build list.
module_version() {
	(cd "$mod_dir" && go list -m -f '{{.Version}}' "$1") ||
		die "$c: cannot read the $1 version from $mod_dir/go.mod"
}

# stamp COMPONENT: prints the cache key of the component's build inputs.
stamp() {
	local f
	(
		cd "$mod_dir"
		echo "component $1 package $pkg"
		echo "flags ${build_flags[*]}${ldflags:+ -ldflags=$ldflags}"
		go version
		echo "CGO_ENABLED=$(go env CGO_ENABLED)"
		for f in go.mod go.sum "$pkg"/*.go; do # no *.go for an import path
			[[ -f $f ]] || continue
			echo "== $f $(wc -c <"$f")"
			cat "$f"
		done
	) | sha256sum | cut -c1-20
}

# install_bin FILE COMPONENT: atomically points bin/COMPONENT at FILE.
install_bin() {
	local tmp=$bin_dir/.$2.tmp.$$
	mkdir -p "$bin_dir"
	rm -f "$tmp"
	ln "$1" "$tmp" 2>/dev/null || cp "$1" "$tmp"
	mv -f "$tmp" "$bin_dir/$2"
}

# adoptable FILE: checks that FILE's build info matches this module and Go.
adoptable() {
	local info want_path want_go entry
	if [[ -n $ldflags ]]; then
		# -trimpath leaves -ldflags out of the build info: no way to check them.
		echo "$c is built with -ldflags, which cannot be checked"
		return 1
	fi
	for entry in "$cache_dir/$c"-*; do
		if [[ $1 -ef $entry ]]; then
			echo "it is the cached build of other inputs (${entry##*/})"
			return 1
		fi
	done
	info=$(go version -m "$1" 2>/dev/null) || {
		echo "not a Go binary"
		return 1
	}
	want_path=$(cd "$mod_dir" && go list -f '{{.ImportPath}}' "$pkg")
	want_go=$(cd "$mod_dir" && go env GOVERSION)
	awk -v path="$want_path" -v gov="$want_go" -v sum="$mod_dir/go.sum" '
		BEGIN { while ((getline l < sum) > 0) { split(l, a, " "); ok[a[1] " " a[2] " " a[3]] = 1 } }
		NR == 1 { if ($2 != gov) { print "built with " $2 ", not " gov; bad = 1 } }
		$1 == "path" { seen = 1; if ($2 != path) { print "package " $2 ", not " path; bad = 1 } }
		($1 == "dep" || $1 == "=>") && NF >= 4 && !(($2 " " $3 " " $4) in ok) { print "module " $2 " " $3 " not in go.sum"; bad = 1 }
		END { if (!seen) { print "no build info"; bad = 1 } exit bad }
	' <<<"$info" | head -n 3
	return "${PIPESTATUS[0]}"
}

# prune COMPONENT: keeps the $keep most recently used cache entries of it and
# removes leftovers of interrupted builds (the caller holds its lock).
prune() {
	rm -f "$cache_dir/$1"-*.tmp.*
	find "$cache_dir" -maxdepth 1 -type f -name "$1-*" -printf '%T@ %p\n' |
		sort -rn | tail -n +$((keep + 1)) | cut -d' ' -f2- |
		while read -r old; do rm -f "$old"; done
}

adopt=false
components=()
for arg in "$@"; do
	case $arg in
	--adopt) adopt=true ;;
	-h | --help)
		usage
		exit 0
		;;
	-*) die "unknown option '$arg' (see --help)" ;;
	*) components+=("$arg") ;;
	esac
done
((${#components[@]})) || components=("${all_components[@]}")
command -v go >/dev/null || die "go is not on PATH"
mkdir -p "$cache_dir"

for c in "${components[@]}"; do
	component_dirs "$c"
	component_ldflags "$c"
	cached=$cache_dir/$c-$(stamp "$c")

	# One build per component at a time, across clones sharing the cache.
	exec {lock}>"$cache_dir/$c.lock"
	if ! flock -n "$lock"; then
		echo "$c: waiting for another build of $c" >&2
		flock "$lock"
	fi

	if [[ -s $cached ]]; then
		[[ $bin_dir/$c -ef $cached ]] || install_bin "$cached" "$c"
		touch "$cached"
		echo "$c: cached"
	elif [[ -f $bin_dir/$c ]] && $adopt && why=$(adoptable "$bin_dir/$c"); then
		cp "$bin_dir/$c" "$cached.tmp.$$"
		mv -f "$cached.tmp.$$" "$cached"
		install_bin "$cached" "$c"
		echo "$c: adopted bin/$c"
	else
		if [[ -f $bin_dir/$c ]]; then
			if $adopt; then
				echo "$c: not adopting bin/$c: ${why//$'\n'/; }; rebuilding" >&2
			else
				echo "$c: bin/$c is not the cached build of these inputs; rebuilding" >&2
			fi
		fi
		log=$cache_dir/$c.build.log
		tmp=$cached.tmp.$$
		start=$SECONDS
		if ! (cd "$mod_dir" && nice -n "$niceness" go build "${build_flags[@]}" ${ldflags:+"-ldflags=$ldflags"} -o "$tmp" "$pkg") >"$log" 2>&1; then
			rm -f "$tmp"
			tail -n 30 "$log" >&2
			die "$c: build failed after $((SECONDS - start))s (module $mod_dir, full log: $log)"
		fi
		rm -f "$log"
		mv -f "$tmp" "$cached"
		install_bin "$cached" "$c"
		echo "$c: built in $((SECONDS - start))s"
	fi
	prune "$c"
	exec {lock}>&-
done
