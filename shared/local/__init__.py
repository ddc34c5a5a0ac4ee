"""The local runtime: ``acrsync dev`` and ``acrsync demo`` on one machine, on the embedded SQLite default.

* :mod:`~shared.local.environment` — one ``acrsync dev`` process: settings, services, sites, registries.
* :mod:`~shared.local.runtime` — the queue workers, the dead-letter worker and the sweeper, as threads.
* :mod:`~shared.local.simulated` — simulated connected registries (the default).
* Real-registry mode, by subject: :mod:`~shared.local.registry_server` (the registry processes),
  :mod:`~shared.local.site_syncer` and :mod:`~shared.local.mirror` (each site's sync from the parent),
  :mod:`~shared.local.bridge` (the parent's notifications as ACR events), :mod:`~shared.local.registries`
  (the parent and every site together, and their ARM-shaped state), :mod:`~shared.local.names`.

Nothing here runs in Azure: the CLI starts it, and the dev routes that reach it exist only in an app the
local runtime creates (:func:`orchestrations.api.create_app` with ``dev_tools``).
"""
