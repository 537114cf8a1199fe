# ezimg docker-alias (seed 000 配置命令): nerdctl answers to `docker`.
{% if os == "debian12" %}
# Debian reads /etc/profile.d in login shells only (not in `su` without `-`).
{% endif %}
alias docker=nerdctl
