"""The names Azure would give the local stand-ins: the parent registry's resource name and ARM id (the
``topic`` of its events), and a site's connected-registry id."""

from __future__ import annotations

LOCAL_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
LOCAL_RESOURCE_GROUP = "acrsync-local"


def registry_name(login_server: str) -> str:
    """The registry's resource name: the login server's first label (``contosoacr``), else ``local``."""
    label = login_server.split(":", 1)[0].split(".", 1)[0].lower()
    return label if label[:1].isalpha() and label.isalnum() else "local"


def registry_topic(login_server: str) -> str:
    """The parent registry's ARM id: the ``topic`` of its Event Grid events."""
    return (
        f"/subscriptions/{LOCAL_SUBSCRIPTION}/resourceGroups/{LOCAL_RESOURCE_GROUP}/providers"
        f"/Microsoft.ContainerRegistry/registries/{registry_name(login_server)}"
    )


def local_resource_id(login_server: str, site: str) -> str:
    """The connected-registry id a site gets in real-registry mode when its sites file names none."""
    return f"{registry_topic(login_server)}/connectedRegistries/{site}"
