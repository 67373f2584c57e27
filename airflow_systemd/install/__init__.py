"""Installing the systemd units: render (from the one unit source), access (checks as the
service's user), host (what the host has), files (what install-units owns), command (the CLI),
role (which units a host runs: all-in-one, control, scheduler, worker)."""
