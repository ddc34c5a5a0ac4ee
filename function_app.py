"""The Azure Functions entry point: builds the app and registers the blueprints. Nothing else."""

import azure.functions as func

from orchestrations import http_api

app = func.AsgiFunctionApp(app=http_api.asgi_app, http_auth_level=func.AuthLevel.FUNCTION)
