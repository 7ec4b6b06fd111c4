"""popdb-ops lab: systemd-nspawn hosts on Linux bridges, driven by bin/lab."""
