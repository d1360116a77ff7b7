# shellcheck shell=bash
# lib-net.sh: an isolated test network for the benchmark scripts, the bash
# twin of core/internal/netlab. Sourced, not run.
#
# netlab_up N makes N hosts: network namespaces $NETLAB_ID-h0 .. -h(N-1),
# each with one veth into a bridge that lives in its own namespace
# ($NETLAB_ID-sw). Host i has address 198.18.0.(i+1)/24 and a route for
# 239.0.0.0/8 on its veth; host 0 is the sender by convention. Nothing is
# created in the root namespace, the bridge has no uplink and the hosts have
# no route out, so no packet can leave the lab. The bridge does no IGMP
# snooping: multicast reaches every host.
#
# The caller must run netlab_down when it exits (trap ... EXIT): it kills,
# by PID, every process inside the lab's namespaces, then deletes them
# (which removes the veths and the bridge).

NETLAB_ID=
NETLAB_N=0

netlab_ns() { echo "$NETLAB_ID-h$1"; }
netlab_ip() { echo "198.18.0.$(($1 + 1))"; }
netlab_iface() { echo "${NETLAB_ID}h$1"; }
netlab_exec() { # netlab_exec HOST CMD [ARGS...]
	local h=$1
	shift
	ip netns exec "$(netlab_ns "$h")" "$@"
}

# netlab_namespaces lists the lab's namespaces, hosts first.
netlab_namespaces() {
	local i
	for ((i = 0; i < NETLAB_N; i++)); do netlab_ns "$i"; done
	echo "$NETLAB_ID-sw"
}

netlab_up() { # netlab_up N
	local n=$1 i sw
	[[ $(id -u) -eq 0 ]] || { echo "netlab_up: needs root (network namespaces)" >&2; return 1; }
	command -v ip >/dev/null || { echo "netlab_up: ip not found (Debian package iproute2)" >&2; return 1; }
	((n >= 1 && n <= 250)) || { echo "netlab_up: $n hosts: want 1 to 250" >&2; return 1; }
	NETLAB_ID=dc$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
	NETLAB_N=$n
	sw=$NETLAB_ID-sw
	ip netns add "$sw" || return 1
	for ((i = 0; i < n; i++)); do ip netns add "$(netlab_ns "$i")" || return 1; done
	local ns
	for ns in $(netlab_namespaces); do
		# No IPv6: it would only add solicitations and MLD reports.
		ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null || return 1
	done
	{
		echo "link set lo up"
		echo "link add ${NETLAB_ID}br type bridge stp_state 0 mcast_snooping 0"
		echo "link set ${NETLAB_ID}br up"
		for ((i = 0; i < n; i++)); do
			echo "link add ${NETLAB_ID}p$i type veth peer name $(netlab_iface "$i") netns $(netlab_ns "$i")"
			echo "link set ${NETLAB_ID}p$i master ${NETLAB_ID}br"
			echo "link set ${NETLAB_ID}p$i up"
		done
	} | ip -n "$sw" -batch - || return 1
	for ((i = 0; i < n; i++)); do
		printf '%s\n' "link set lo up" \
			"addr add $(netlab_ip "$i")/24 dev $(netlab_iface "$i")" \
			"link set $(netlab_iface "$i") up" \
			"route add 239.0.0.0/8 dev $(netlab_iface "$i")" |
			ip -n "$(netlab_ns "$i")" -batch - || return 1
	done
}

# netlab_loss HOST PERCENT drops PERCENT% of the UDP datagrams HOST
# receives (nftables in its namespace); 0 removes the rule.
netlab_loss() {
	local h=$1 pct=$2
	{
		echo "add table inet netlab_loss"
		echo "delete table inet netlab_loss"
		# numgen yields 0..99, so 100% is a plain drop.
		local match="numgen random mod 100 < $pct"
		((pct >= 100)) && match=
		if ((pct > 0)); then
			echo "table inet netlab_loss { chain input { type filter hook input priority filter; policy accept; meta l4proto udp $match counter drop; }; }"
		fi
	} | netlab_exec "$h" nft -f -
}

# netlab_dropped HOST prints how many datagrams the loss rule dropped.
netlab_dropped() {
	netlab_exec "$1" nft list table inet netlab_loss 2>/dev/null |
		sed -n 's/.*counter packets \([0-9]*\).*/\1/p' | head -n 1 | grep . || echo 0
}

# netlab_kill_all kills, by PID, every process inside the lab.
netlab_kill_all() {
	local ns pids p try
	[[ -n $NETLAB_ID ]] || return 0
	for try in 1 2 3 4 5 6 7 8 9 10; do
		pids=
		for ns in $(netlab_namespaces); do
			[[ -e /run/netns/$ns ]] || continue
			for p in $(ip netns pids "$ns" 2>/dev/null); do
				[[ $p == "$$" ]] || pids+=" $p" # never this shell
			done
		done
		[[ -n $pids ]] || return 0
		# shellcheck disable=SC2086
		kill -9 $pids 2>/dev/null
		sleep 0.2
	done
	echo "netlab: processes still inside the lab: $pids" >&2
}

# netlab_down removes the lab.
netlab_down() {
	local ns
	[[ -n $NETLAB_ID ]] || return 0
	netlab_kill_all
	for ns in $(netlab_namespaces); do
		[[ -e /run/netns/$ns ]] && ip netns del "$ns"
	done
	NETLAB_ID= NETLAB_N=0
}
