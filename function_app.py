"""The Azure Functions entry point: builds the app and registers the blueprints. Nothing else."""

import azure.functions as func

from orchestrations import acr_events, site_sync, sweeper
from orchestrations.api import create_app

app = func.AsgiFunctionApp(app=create_app(), http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(acr_events.bp)
app.register_functions(site_sync.bp)
app.register_functions(sweeper.bp)
