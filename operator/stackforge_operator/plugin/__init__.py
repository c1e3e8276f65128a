"""``kubectl stackforge``: the runbook's daily commands as a kubectl plugin.

- :mod:`.render`: pure: a tenant's one-screen status, the cluster's summary;
- :mod:`.api`: the plugin's only module that talks to the Kubernetes API;
- :mod:`.cli`: the commands, their options and exit codes.
"""
