#!/usr/bin/env bash
changed=${EZ_LAYER_CHANGED:-0}
{% if os == "el7" %}
# Seed: sed -i "s/#UseDNS yes/UseDNS no/g" /etc/ssh/sshd_config
before=$(cksum < /etc/ssh/sshd_config)
ez_sed /etc/ssh/sshd_config 's/#UseDNS yes/UseDNS no/g'
if [ "$before" != "$(cksum < /etc/ssh/sshd_config)" ]; then
    changed=1
fi
{% endif %}

# Reload (not restart) so open sessions survive; only when sshd's config changed and is valid.
if [ "$changed" = 1 ] && ez_live; then
    sshd -t
    systemctl reload {{ "ssh" if os == "debian12" else "sshd" }}
fi
