#!/usr/bin/env bash
# Seeds 001/002: every node's /etc/hosts names all cluster nodes. One marked block, rewritten
# only when it differs; the rest of the file (localhost, the distribution's lines) is kept.
# cloud-init's manage_etc_hosts is off in ezimg's seeds, so nothing rewrites this at boot.
want=$(cat <<'HOSTS'
# BEGIN ezimg cluster {{ cluster.name }}
{% for n in nodes %}
{{ n.ip }} {{ n.hostname }}
{% endfor %}
# END ezimg cluster {{ cluster.name }}
HOSTS
)
have=$(sed -n '/^# BEGIN ezimg cluster /,/^# END ezimg cluster /p' /etc/hosts 2>/dev/null || true)
if [ "$have" != "$want" ]; then
    tmp=$(mktemp /etc/.hosts.XXXXXX)
    {
        sed '/^# BEGIN ezimg cluster /,/^# END ezimg cluster /d' /etc/hosts 2>/dev/null || true
        printf '%s\n' "$want"
    } >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" /etc/hosts
    ez_changed "/etc/hosts lists the cluster's nodes"
fi
