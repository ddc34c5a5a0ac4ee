"""The agent's Kubernetes manifest (deploy/agent/cronjob.yaml) runs `acrsync agent` with exactly the
settings the agent reads, its secrets from a Secret, a buffer that outlives each run, one run at a
time, and a service account that can only read pods."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "agent" / "cronjob.yaml"


def documents() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc}


def agent_settings_read() -> set[str]:
    source = (ROOT / "shared" / "agent.py").read_text()
    return set(re.findall(r'env\.get\("(ACRSYNC_[A-Z_]+)"\)', source))


def test_the_cronjob_runs_the_agent_with_the_settings_it_reads() -> None:
    cronjob = documents()["CronJob"]
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["acrsync", "agent"]
    names = {entry["name"] for entry in container["env"]}
    assert names == agent_settings_read() - {
        "ACRSYNC_KUBE_API",
        "ACRSYNC_AGENT_MAX_BUFFERED",
    }  # in-cluster config, default
    secrets = {entry["name"] for entry in container["env"] if "valueFrom" in entry}
    assert secrets == {"ACRSYNC_REPORT_TOKEN", "ACRSYNC_LOCAL_REGISTRY_USERNAME", "ACRSYNC_LOCAL_REGISTRY_PASSWORD"}
    assert all("secretKeyRef" in entry["valueFrom"] for entry in container["env"] if "valueFrom" in entry)
    buffer = next(entry["value"] for entry in container["env"] if entry["name"] == "ACRSYNC_AGENT_BUFFER")
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "persistentVolumeClaim" in volumes[mounts[buffer]]  # reports outlive the run that made them
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"  # the buffer has one writer
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_agent_may_only_read_pods() -> None:
    role = documents()["ClusterRole"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    binding = documents()["ClusterRoleBinding"]
    assert binding["subjects"][0]["name"] == documents()["ServiceAccount"]["metadata"]["name"]
