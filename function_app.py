"""The Azure Functions entry point: builds the app and registers the blueprints. Nothing else."""

import azure.functions as func

from orchestrations import acr_events, http, site_sync, sweeper

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http.bp)
app.register_functions(acr_events.bp)
app.register_functions(site_sync.bp)
app.register_functions(sweeper.bp)
