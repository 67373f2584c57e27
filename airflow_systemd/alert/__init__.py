"""`airflow-systemd alert INSTANCE`: tell someone that an Airflow service failed.

It runs as its own account (``airflow-alert``: not root, not the airflow user that runs DAG
code) in ``airflow-alert@.service``, started two ways:

* After every run of an Airflow unit, by its
  ``ExecStopPost=-+systemctl start airflow-alert@%N:${SERVICE_RESULT}:${EXIT_CODE}:...``: the
  one hook that sees the failures systemd restarts automatically (OnFailure= fires only once
  a unit has ended up ``failed``). systemd fills in how the run ended; the instance name
  carries it here (:func:`.command.parse_instance`), so the privileged line only asks systemd to start
  a unit and interprets nothing. A run that ended with ``success`` is only recorded.
* ``OnFailure=airflow-alert@%N.service``, once the unit has ended up failed, with
  $MONITOR_SERVICE_RESULT & co. A failure systemd was never going to restart (exit 78, a
  configuration error) is alerted by whichever of the two comes first; this adds the alert
  that systemd gave up restarting (start limit hit).
* After each start of an Airflow unit, once it is READY, by its
  ``ExecStartPost=-+systemctl start --no-block airflow-alert@%N:started``: the unit is active
  again, which may end an incident.
* By hand, for the unit's current state: to try the channels (``--dry-run`` prints the payload).

Failures that systemd restarts are grouped into incidents (:mod:`.incident`): those that
share a cause, of any unit, within ``incident_window`` are one alert, and one "resolved" alert
follows when all their units are active again. With ``incident_window = 0``: one alert per
failure, rate-limited per unit: at most ``max_alerts`` per ``window``, except
that the first failure after a run that did not fail, and a unit that stays down, are always
delivered. Alerts held back are counted in the next one. The rate-limit state lives in
the alert's StateDirectory= (:mod:`.history`), which only this account can read; how each
unit's last run ended is also written to ``runs/`` beneath it, readable by all
(:func:`airflow_systemd.last_run.previous_stop` is how a starting component learns that its
previous run failed).

Channels, in /etc/airflow-systemd/alert.conf (:mod:`.config`; ``alert.conf`` next to the units
documents every key): an HTTP POST of the JSON payload (``slack = true``: Slack's
``{"text": ...}`` instead), mail through the local sendmail, or any command with the JSON on
its stdin. All are tried, in parallel, each within ``timeout``. A channel that fails is
logged; the command exits 0 whatever happens, so that the alert unit never loops and the
service's result stays its own.

The modules, in the order a run goes through them: :mod:`.command` (the subcommand, and the
three ways it runs), :mod:`.config`, :mod:`.systemd` (what systemd says: restart rule, state,
journal), :mod:`.history` (the locked per-unit state, rate limit; the locked incidents file),
:mod:`.incident`, :mod:`.payload`,
:mod:`.channels`. Nothing is re-exported here: importing the package imports none of them.
"""
