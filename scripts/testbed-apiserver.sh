#!/usr/bin/env bash
# Starts a real etcd and kube-apiserver on 127.0.0.1 for tests, or stops them.
#
#   scripts/testbed-apiserver.sh [start] DIR [OPTIONS] [-- EXTRA-APISERVER-FLAGS...]
#   scripts/testbed-apiserver.sh stop DIR
#
# start: makes DIR (certificates, keys, token file, etcd data, logs, pid
# files), starts bin/etcd and bin/kube-apiserver in the background, waits
# until /readyz answers ok and prints the path of DIR/kubeconfig (cluster
# admin through a static bearer token, verified TLS) as its only stdout line.
# If either server dies or does not get ready in time, it prints the tail of
# the logs, stops what it started and exits non-zero.
# stop: stops the servers whose pids are in DIR (kube-apiserver, then etcd).
#
# Options of start:
#   --encryption-provider-config FILE  passed through to kube-apiserver
#   --etcd-port N        etcd client port (default 23790; peer port N+10)
#   --apiserver-port N   kube-apiserver secure port (default 26443)
#   --timeout S          seconds to wait for readiness (default 180)
#
# Files in DIR: kubeconfig, token (the admin bearer token), pki/ca.crt (CA
# of the serving certificate), etcd.log, kube-apiserver.log, *.pid.
# Binaries come from TESTBED_BIN (default: REPO/bin); build them with
# scripts/testbed.sh etcd kube-apiserver.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin_dir=${TESTBED_BIN:-$root/bin}

die() {
	echo "testbed-apiserver: $*" >&2
	exit 1
}

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

# stop_pid FILE: stops the process whose pid is in FILE, if it still runs.
stop_pid() {
	local pid i
	[[ -f $1 ]] || return 0
	pid=$(<"$1")
	if [[ $pid =~ ^[0-9]+$ ]] && kill "$pid" 2>/dev/null; then
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$1"
}

stop_all() {
	stop_pid "$dir/kube-apiserver.pid"
	stop_pid "$dir/etcd.pid"
}

fail() {
	local log
	echo "testbed-apiserver: $*" >&2
	for log in etcd kube-apiserver; do
		if [[ -s $dir/$log.log ]]; then
			echo "--- last lines of $dir/$log.log" >&2
			tail -n 20 "$dir/$log.log" >&2
		fi
	done
	stop_all
	exit 1
}

# wait_for NAME PIDFILE CMD...: waits until CMD succeeds while the process runs.
wait_for() {
	local name=$1 pid
	pid=$(<"$2")
	shift 2
	while ! "$@" >/dev/null 2>&1; do
		kill -0 "$pid" 2>/dev/null || fail "$name exited before it got ready"
		((SECONDS < deadline)) || fail "$name not ready after ${timeout}s"
		sleep 0.5
	done
}

action=start
case ${1:-} in
start | stop)
	action=$1
	shift
	;;
-h | --help)
	usage
	exit 0
	;;
esac
[[ $# -ge 1 && $1 != -* ]] || die "usage: $0 [start|stop] DIR [options] (see --help)"
mkdir -p "$1"
dir=$(cd "$1" && pwd)
shift

if [[ $action == stop ]]; then
	stop_all
	exit 0
fi

etcd_port=23790
apiserver_port=26443
timeout=180
encryption_config=
extra=()
while (($#)); do
	case $1 in
	--encryption-provider-config)
		[[ $# -ge 2 ]] || die "$1 needs a FILE"
		[[ -f $2 ]] || die "no such file: $2"
		encryption_config=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
		shift 2
		;;
	--etcd-port | --apiserver-port | --timeout)
		[[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || die "$1 needs a number"
		case $1 in
		--etcd-port) etcd_port=$2 ;;
		--apiserver-port) apiserver_port=$2 ;;
		--timeout) timeout=$2 ;;
		esac
		shift 2
		;;
	--)
		shift
		extra=("$@")
		break
		;;
	-h | --help)
		usage
		exit 0
		;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
done
peer_port=$((etcd_port + 10))

for b in etcd kube-apiserver; do
	[[ -x $bin_dir/$b ]] || die "$bin_dir/$b is missing: run scripts/testbed.sh etcd kube-apiserver"
done
for p in "$dir/etcd.pid" "$dir/kube-apiserver.pid"; do
	if [[ -f $p ]] && kill -0 "$(<"$p")" 2>/dev/null; then
		die "already running in $dir (pid $(<"$p")): run '$0 stop $dir' first"
	fi
done
# A server already on a port would answer the readiness checks in our stead.
for p in "$etcd_port" "$peer_port" "$apiserver_port"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		die "127.0.0.1:$p is in use; choose other ports (--etcd-port, --apiserver-port)"
	fi
done

# Certificates and keys, made once per DIR.
pki=$dir/pki
mkdir -p "$pki"
if [[ ! -f $pki/serving.crt ]]; then
	(
		cd "$pki"
		openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=testbed-ca \
			-keyout ca.key -out ca.crt
		openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
			-keyout serving.key -out serving.csr
		printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc' \
			'extendedKeyUsage=serverAuth' >serving.ext
		openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
			-days 3650 -extfile serving.ext -out serving.crt
		openssl genrsa -out sa.key 2048
		openssl rsa -in sa.key -pubout -out sa.pub
	) >"$dir/openssl.log" 2>&1 || die "openssl failed, see $dir/openssl.log"
fi
if [[ ! -f $dir/token ]]; then
	openssl rand -hex 24 >"$dir/token"
fi
token=$(<"$dir/token")
# token,user,uid,"group1,group2"
echo "$token,testbed-admin,testbed-admin,\"system:masters\"" >"$pki/tokens.csv"

cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: https://127.0.0.1:$apiserver_port
    certificate-authority: $pki/ca.crt
users:
- name: testbed-admin
  user:
    token: $token
contexts:
- name: testbed
  context:
    cluster: testbed
    user: testbed-admin
current-context: testbed
EOF

deadline=$((SECONDS + timeout))

"$bin_dir/etcd" \
	--name=testbed \
	--data-dir="$dir/etcd" \
	--listen-client-urls="http://127.0.0.1:$etcd_port" \
	--advertise-client-urls="http://127.0.0.1:$etcd_port" \
	--listen-peer-urls="http://127.0.0.1:$peer_port" \
	--initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
	--initial-cluster="testbed=http://127.0.0.1:$peer_port" \
	--initial-cluster-state=new \
	--unsafe-no-fsync \
	--log-level=warn \
	</dev/null >"$dir/etcd.log" 2>&1 &
echo $! >"$dir/etcd.pid"
wait_for etcd "$dir/etcd.pid" curl -fsS "http://127.0.0.1:$etcd_port/health"

apiserver_flags=(
	--etcd-servers="http://127.0.0.1:$etcd_port"
	--bind-address=127.0.0.1
	--advertise-address=127.0.0.1
	--secure-port="$apiserver_port"
	--tls-cert-file="$pki/serving.crt"
	--tls-private-key-file="$pki/serving.key"
	--token-auth-file="$pki/tokens.csv"
	--authorization-mode=RBAC
	--service-account-issuer=https://kubernetes.default.svc.cluster.local
	--service-account-key-file="$pki/sa.pub"
	--service-account-signing-key-file="$pki/sa.key"
	--service-cluster-ip-range=10.0.0.0/24
	--endpoint-reconciler-type=none
)
if [[ -n $encryption_config ]]; then
	apiserver_flags+=(--encryption-provider-config="$encryption_config")
fi
"$bin_dir/kube-apiserver" "${apiserver_flags[@]}" "${extra[@]}" \
	</dev/null >"$dir/kube-apiserver.log" 2>&1 &
echo $! >"$dir/kube-apiserver.pid"
wait_for kube-apiserver "$dir/kube-apiserver.pid" \
	curl -fsS --cacert "$pki/ca.crt" -H "Authorization: Bearer $token" \
	"https://127.0.0.1:$apiserver_port/readyz"

echo "$dir/kubeconfig"
