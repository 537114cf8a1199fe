#!/usr/bin/env bash
# Seed: nerdctl completion bash > /etc/bash_completion.d/{nerdctl,docker};
# sed -i "s#nerdctl#docker#g" /etc/bash_completion.d/docker

# Install $1 as $2 only when the text differs, so a second run changes nothing.
install_if_changed() {
    if ! cmp -s "$1" "$2"; then
        install -m 0644 "$1" "$2"
        ez_changed "bash completion $2"
    fi
}

nerdctl=/usr/local/bin/nerdctl
tmp=$(mktemp)
if [ ! -x "$nerdctl" ]; then
    ez_log "no $nerdctl: bash completions not generated"
elif ! "$nerdctl" completion bash > "$tmp"; then
    ez_log "nerdctl completion bash failed: bash completions not generated"
else
    ez_mkdir /etc/bash_completion.d
    install_if_changed "$tmp" /etc/bash_completion.d/nerdctl
    sed -i "s#nerdctl#docker#g" "$tmp"
    install_if_changed "$tmp" /etc/bash_completion.d/docker
fi
rm -f "$tmp"
